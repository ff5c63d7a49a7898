"""The orchestrators, stepped as the SDK's samples test them: the registered generator under
``azure.durable_functions.testing.orchestrator_generator_wrapper``, with a mocked context whose tasks hold canned
results. The full replay path (histories, the extension's protocol) is covered by the local host's end-to-end tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from unittest.mock import MagicMock

import pytest
from azure.durable_functions.testing import orchestrator_generator_wrapper

from memory_core import session as rules
from memory_core.domain import SessionStatus, Turn
from memory_core.service import ReflectionOutcome
from orchestrations import names

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
USER, SESSION = "alice", "s1"
ENTITY = names.session_entity(USER, SESSION)


class Task:
    """A completed task as the wrapper reads it: ``result`` returns the value or raises the failure."""

    def __init__(self, kind: str, name: str, value: Any, result: Any = None, error: Exception | None = None) -> None:
        self.kind, self.name, self.value = kind, name, value
        self._result, self._error = result, error

    @property
    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result


class Context:
    """A mocked ``DurableOrchestrationContext``: each call gives the next canned outcome of that activity/operation."""

    def __init__(self, job: dict[str, Any], outcomes: dict[str, list[Any]]) -> None:
        self.outcomes = {k: list(v) for k, v in outcomes.items()}
        self.signals: list[tuple[Any, str, Any]] = []
        self.mock = MagicMock()
        self.mock.get_input.return_value = job
        self.mock.current_utc_datetime = T0
        self.mock.is_replaying = False
        self.mock.instance_id = "instance-1"
        self.mock.call_activity_with_retry.side_effect = lambda name, retry, value: self._task("activity", name, value)
        self.mock.call_entity.side_effect = lambda entity, op, value=None: self._task("entity", op, value, entity)
        self.mock.signal_entity.side_effect = lambda entity, op, value=None: self.signals.append((entity, op, value))

    def _task(self, kind: str, name: str, value: Any, entity: Any = None) -> Task:
        if entity is not None:
            assert entity == ENTITY
        outcome = self.outcomes[name].pop(0)
        if isinstance(outcome, Exception):
            return Task(kind, name, value, error=outcome)
        return Task(kind, name, value, result=outcome)


def run(functions: dict[str, Any], name: str, context: Context) -> tuple[list[Task], Any]:
    """Step the orchestrator to its end: the tasks it yielded, in order, and its output."""
    orchestrator = functions[name].get_user_function().orchestrator_function
    steps = list(orchestrator_generator_wrapper(orchestrator(context.mock)))
    *tasks, output = steps
    for task in tasks:  # every payload is small: ids, counters, a bounded summary
        assert len(json.dumps(task.value)) < 8 * 1024
    return tasks, output


def snapshot(turn_count: int, status: SessionStatus = SessionStatus.ACTIVE) -> dict[str, Any]:
    record = rules.new_record(USER, SESSION, T0).model_copy(
        update={"turn_count": turn_count, "indexed_through": turn_count, "status": status}
    )
    turn = Turn(
        user_id=USER, session_id=SESSION, seq=turn_count, turn_id="t", user_message="u", agent_message="a", timestamp=T0
    )
    return rules.SessionSnapshot.of(record, [turn]).model_dump(mode="json")


def claim(index: int, first: int, last: int, chunks: int = 1) -> dict[str, Any]:
    return {
        "user_id": USER,
        "session_id": SESSION,
        "index": index,
        "first_seq": first,
        "last_seq": last,
        "chunks": chunks,
    }


def compacted(chunks: int, through: int) -> dict[str, Any]:
    return {"chunk_count": chunks, "through_seq": through, "summary": f"through {through}"}


BATCH = {"user_id": USER, "session_id": SESSION, "through_seq": 20}


def test_a_batch_indexes_then_compacts_every_chunk_the_entity_hands_out(functions: dict[str, Any]) -> None:
    context = Context(
        BATCH,
        {
            names.INDEX_ACTIVITY: [snapshot(35)],
            names.SYNC: [claim(0, 1, 10)],
            names.COMPACT_ACTIVITY: [compacted(1, 10), compacted(3, 30)],
            names.APPLY_COMPACTION: [claim(1, 11, 30, chunks=2), None],  # the turns came faster than the compaction
        },
    )
    tasks, output = run(functions, names.BATCH_ORCHESTRATOR, context)
    assert [(t.kind, t.name) for t in tasks] == [
        ("activity", names.INDEX_ACTIVITY),
        ("entity", names.SYNC),
        ("activity", names.COMPACT_ACTIVITY),
        ("entity", names.APPLY_COMPACTION),
        ("activity", names.COMPACT_ACTIVITY),
        ("entity", names.APPLY_COMPACTION),
    ]
    assert tasks[0].value == BATCH
    assert tasks[1].value == snapshot(35)
    assert tasks[2].value == {"claim": claim(0, 1, 10), "now": "2026-05-01T09:00:00Z"}
    assert tasks[3].value == compacted(1, 10)
    assert tasks[4].value["claim"] == claim(1, 11, 30, chunks=2)
    assert output == {
        "user_id": USER,
        "session_id": SESSION,
        "indexed_through": 35,
        "chunks_compacted": 3,
        "skipped": None,
    }


@pytest.mark.parametrize(
    ("indexed", "reason"), [(None, "the session is gone"), (snapshot(20, SessionStatus.ENDED), "the session has ended")]
)
def test_a_batch_of_a_gone_or_ended_session_stops_after_indexing(
    functions: dict[str, Any], indexed: Any, reason: str
) -> None:
    context = Context(BATCH, {names.INDEX_ACTIVITY: [indexed]})
    tasks, output = run(functions, names.BATCH_ORCHESTRATOR, context)
    assert [t.name for t in tasks] == [names.INDEX_ACTIVITY]
    assert output["skipped"] == reason


def test_a_compaction_that_fails_for_good_gives_its_claim_back_and_fails_the_batch(functions: dict[str, Any]) -> None:
    context = Context(
        BATCH,
        {
            names.INDEX_ACTIVITY: [snapshot(20)],
            names.SYNC: [claim(0, 1, 10)],
            names.COMPACT_ACTIVITY: [RuntimeError("the model is down")],
            names.RELEASE_CLAIM: [None],
        },
    )
    orchestrator = functions[names.BATCH_ORCHESTRATOR].get_user_function().orchestrator_function
    yielded = []
    with pytest.raises(RuntimeError, match="the model is down"):
        for step in orchestrator_generator_wrapper(orchestrator(context.mock)):
            yielded.append(step)
    assert [t.name for t in yielded] == [
        names.INDEX_ACTIVITY,
        names.SYNC,
        names.COMPACT_ACTIVITY,
        names.RELEASE_CLAIM,
    ]


def test_reflection_indexes_reflects_and_finishes_the_entity(functions: dict[str, Any]) -> None:
    outcome = ReflectionOutcome(
        user_id=USER, session_id=SESSION, turn_count=3, summary_id="sum", insights_added=["i1"]
    ).model_dump(mode="json")
    job = {"user_id": USER, "session_id": SESSION}
    context = Context(
        job, {names.INDEX_ACTIVITY: [snapshot(3, SessionStatus.ENDED)], names.REFLECT_ACTIVITY: [outcome]}
    )
    tasks, output = run(functions, names.REFLECTION_ORCHESTRATOR, context)
    assert [(t.name, t.value) for t in tasks] == [
        (names.INDEX_ACTIVITY, {**job, "through_seq": None}),
        (names.REFLECT_ACTIVITY, {**job, "now": "2026-05-01T09:00:00Z"}),
    ]
    assert output == outcome
    assert context.signals == [(ENTITY, names.FINISH, {**job, "now": "2026-05-01T09:00:00Z"})]


@pytest.mark.parametrize("evicted", [True, False])
def test_eviction_unloads_the_entity_only_when_the_store_marked_the_session_idle(
    functions: dict[str, Any], evicted: bool
) -> None:
    job = {"user_id": USER, "session_id": SESSION, "cutoff": "2026-05-01T08:30:00Z"}
    context = Context(
        job,
        {
            names.INDEX_ACTIVITY: [snapshot(12)],
            names.SYNC: [claim(0, 1, 10)],
            names.COMPACT_ACTIVITY: [compacted(1, 10)],
            names.APPLY_COMPACTION: [None],
            names.EVICT_ACTIVITY: [evicted],
        },
    )
    tasks, output = run(functions, names.EVICTION_ORCHESTRATOR, context)
    # What is due is compacted first, so the evicted session's record holds everything a cold restore needs.
    assert [t.name for t in tasks] == [
        names.INDEX_ACTIVITY,
        names.SYNC,
        names.COMPACT_ACTIVITY,
        names.APPLY_COMPACTION,
        names.EVICT_ACTIVITY,
    ]
    assert tasks[0].value == {"user_id": USER, "session_id": SESSION, "through_seq": None}
    assert tasks[-1].value == job
    assert output == {"evicted": evicted}
    assert context.signals == ([(ENTITY, names.DELETE, None)] if evicted else [])
