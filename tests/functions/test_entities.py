"""The session entity through its registered handle, with the batches the Durable extension sends.

devhost builds each batch (``devhost.engine.entity_batch_request``) from operations queued as an orchestration
queues them, and decodes the answer as its durable back end does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.engine import entity_batch_request, queued_entity_input, read_entity_batch_response, scheduler_id
from devhost.functions import FunctionIndex
from devhost.store import EntityMessage
from memory_core import session as rules
from memory_core.domain import SessionStatus, Turn
from orchestrations import names

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
USER, SESSION = "alice", "s1"
KEY = names.session_key(USER, SESSION)  # the functions conftest sets K_TURN_BUFFER=2, L_TURN_CHUNKS=2


@dataclass
class OperationResult:
    """One entry of an entity batch's ``results``, decoded."""

    is_error: bool
    value: Any


@dataclass
class BatchOutcome:
    """An entity batch's output, decoded."""

    raw: dict[str, Any]
    exists: bool
    state: Any
    results: list[OperationResult]


def snapshot(turn_count: int, compacted_through: int = 0, summary: str = "", **extra: Any) -> dict[str, Any]:
    """A store snapshot as the index activity reports it."""
    record = rules.new_record(USER, SESSION, T0).model_copy(
        update={
            "turn_count": turn_count,
            "indexed_through": turn_count,
            "compacted_through": compacted_through,
            "chunk_count": compacted_through // 2,
            "cumulative_summary": summary,
            "last_activity": T0 + timedelta(minutes=turn_count),
            **extra,
        }
    )
    turns = [
        Turn(
            user_id=USER,
            session_id=SESSION,
            seq=n,
            turn_id=f"t{n}",
            user_message=f"message {n} " + "x" * 40_000,
            agent_message="reply",
            timestamp=T0,
        )
        for n in range(max(1, turn_count - 1), turn_count + 1)
    ]
    return rules.SessionSnapshot.of(record, turns).model_dump(mode="json")


def done(chunk_count: int, through: int, summary: str) -> dict[str, Any]:
    return {"chunk_count": chunk_count, "through_seq": through, "summary": summary}


@pytest.fixture
def session_entity(app_index: FunctionIndex):
    """Run one batch of signals, as an orchestration sends them, on a session entity in ``state`` (None: none)."""
    entity = app_index.entities[names.SESSION_ENTITY]
    entity_id = scheduler_id(names.SESSION_ENTITY, KEY)

    def run(state: Any, *operations: tuple[str, Any]) -> BatchOutcome:
        batch = [
            EntityMessage(n, entity_id, op, queued_entity_input(None if value is None else json.dumps(value)), True)
            for n, (op, value) in enumerate(operations)
        ]
        body = entity_batch_request(entity_id, None if state is None else json.dumps(state), batch)
        answer = read_entity_batch_response(entity.handle(**{entity.trigger_name: body}))
        outcome = BatchOutcome(
            raw=answer.response,
            exists=answer.exists,
            state=None if answer.state is None else json.loads(answer.state),
            results=[OperationResult(r["isError"], json.loads(r["result"])) for r in answer.results],
        )
        assert len(outcome.results) == len(operations)
        assert outcome.raw["signals"] == []
        return outcome

    return run


def test_sync_creates_a_small_versioned_state_from_the_store_snapshot(session_entity) -> None:
    outcome = session_entity(None, (names.SYNC, snapshot(3)))
    assert outcome.exists is True and outcome.results[0] == OperationResult(False, None)  # 1-2 is followed by 1 turn
    state = outcome.state
    assert state["schema_version"] == rules.SCHEMA_VERSION
    assert (state["user_id"], state["session_id"], state["turn_count"], state["status"]) == (USER, SESSION, 3, "active")
    assert [r["turn_id"] for r in state["recent"]] == ["t2", "t3"]
    assert len(json.dumps(state)) < 2_000  # 40,000-character messages leave previews only


def test_sync_claims_the_next_chunk_once_k_turns_follow_it_and_one_at_a_time(session_entity) -> None:
    outcome = session_entity(None, (names.SYNC, snapshot(4)), (names.SYNC, snapshot(6)))
    first, second = outcome.results
    assert first.value == {
        "user_id": USER,
        "session_id": SESSION,
        "index": 0,
        "first_seq": 1,
        "last_seq": 2,
        "chunks": 1,
    }
    assert second.value is None  # chunk 3-4 is due too, but chunk 1-2 is still being compacted
    assert (outcome.state["claimed_through"], outcome.state["compacted_through"]) == (2, 0)


def test_a_session_that_fell_behind_claims_its_due_chunks_together(session_entity) -> None:
    """Four due chunks go in one claim (one activity, four Durable hops), not in four claims one after another."""
    outcome = session_entity(None, (names.SYNC, snapshot(10)))
    claim = outcome.results[0].value
    assert (claim["index"], claim["first_seq"], claim["last_seq"], claim["chunks"]) == (0, 1, 8, 4)
    assert outcome.state["claimed_through"] == 8
    far_behind = session_entity(None, (names.SYNC, snapshot(rules.MAX_CHUNKS_PER_CLAIM * 4)))
    capped = far_behind.results[0].value  # twice as many chunks are due: the first MAX_CHUNKS_PER_CLAIM go now
    assert (capped["last_seq"], capped["chunks"]) == (rules.MAX_CHUNKS_PER_CLAIM * 2, rules.MAX_CHUNKS_PER_CLAIM)


def test_apply_compaction_folds_the_chunk_claims_the_next_and_is_idempotent(session_entity) -> None:
    claimed = session_entity(None, (names.SYNC, snapshot(4)), (names.SYNC, snapshot(6))).state  # 3-4 came due later
    outcome = session_entity(
        claimed, (names.APPLY_COMPACTION, done(1, 2, "turns 1-2")), (names.APPLY_COMPACTION, done(1, 2, "turns 1-2"))
    )
    following, repeated = outcome.results
    assert following.value == {
        "user_id": USER,
        "session_id": SESSION,
        "index": 1,
        "first_seq": 3,
        "last_seq": 4,
        "chunks": 1,
    }
    assert repeated.value is None
    state = outcome.state
    assert (state["compacted_through"], state["claimed_through"], state["chunk_count"]) == (2, 4, 1)
    assert state["cumulative_summary"] == "turns 1-2"


def test_release_claim_lets_the_next_batch_claim_the_chunk_again(session_entity) -> None:
    claimed = session_entity(None, (names.SYNC, snapshot(4))).state
    outcome = session_entity(claimed, (names.RELEASE_CLAIM, None), (names.SYNC, snapshot(5)))
    assert outcome.results[1].value["first_seq"] == 1


def test_newer_state_is_never_overwritten_by_an_older_snapshot(session_entity) -> None:
    hot = session_entity(None, (names.SYNC, snapshot(9, compacted_through=6, summary="through 6"))).state
    outcome = session_entity(hot, (names.SYNC, snapshot(4, compacted_through=2, summary="through 2")))
    assert outcome.state["turn_count"] == 9 and outcome.state["cumulative_summary"] == "through 6"


def test_finish_leaves_a_final_state_without_text_that_nothing_revives(session_entity) -> None:
    hot = session_entity(None, (names.SYNC, snapshot(5, compacted_through=2, summary="private")))
    finish = {"user_id": USER, "session_id": SESSION, "now": T0.isoformat()}
    outcome = session_entity(hot.state, (names.FINISH, finish), (names.SYNC, snapshot(8)))
    state = outcome.state
    assert state["status"] == "ended" and state["cumulative_summary"] == "" and state["recent"] == []
    assert state["turn_count"] == 5 and outcome.results[1].value is None


def test_finish_of_a_session_that_never_was_hot_leaves_a_final_state(session_entity) -> None:
    finish = {"user_id": USER, "session_id": SESSION, "now": T0.isoformat()}
    outcome = session_entity(None, (names.FINISH, finish), (names.SYNC, snapshot(3)))
    assert outcome.exists and outcome.state["status"] == "ended" and outcome.state["turn_count"] == 0


def test_an_ended_snapshot_claims_nothing(session_entity) -> None:
    outcome = session_entity(None, (names.SYNC, snapshot(10, status=SessionStatus.ENDED)))
    assert outcome.results[0].value is None


def test_operations_on_a_session_that_is_not_hot_create_nothing(session_entity) -> None:
    outcome = session_entity(
        None,
        (names.GET, None),
        (names.APPLY_COMPACTION, done(1, 2, "x")),
        (names.RELEASE_CLAIM, None),
        (names.DELETE, None),
    )
    assert outcome.exists is False and outcome.state is None
    assert [r.is_error for r in outcome.results] == [False] * 4


def test_get_answers_the_state_and_delete_removes_it(session_entity) -> None:
    hot = session_entity(None, (names.SYNC, snapshot(3))).state
    outcome = session_entity(hot, (names.GET, None), (names.DELETE, None))
    assert outcome.results[0].value == hot
    assert outcome.exists is False


def test_an_unknown_operation_is_reported_as_an_error_and_the_batch_goes_on(session_entity) -> None:
    outcome = session_entity(None, ("append", {"turn_id": "t1"}), (names.SYNC, snapshot(2)))
    assert outcome.results[0].is_error and "Unknown operation" in str(outcome.results[0].value)
    assert outcome.results[1].is_error is False and outcome.exists


def test_a_malformed_input_is_an_error_that_changes_nothing(session_entity) -> None:
    hot = session_entity(None, (names.SYNC, snapshot(3))).state
    outcome = session_entity(hot, (names.SYNC, {"turn_count": "many"}), (names.SYNC, None))
    assert [r.is_error for r in outcome.results] == [True, True]
    assert outcome.state == hot
