"""The session and pool entities through their registered handles, with the batches the Durable extension sends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from memory_core import session as rules
from memory_core.pool import POOL_SCHEMA_VERSION
from orchestrations import names
from tests.functions.durable import SESSION, T0, USER, AppFunctions, BatchOutcome, OperationResult, run_entity
from tests.functions.durable import turn_input as turn

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

KEY = names.session_key(USER, SESSION)
POOL_KEY = names.POOL_KEY


def fresh_state() -> dict[str, Any]:
    return rules.new_session(USER, SESSION, T0).model_dump(mode="json")


@pytest.fixture
def session_entity(app_functions: AppFunctions):
    handle = app_functions.entities[names.SESSION_ENTITY]

    def run(state: Any, *operations: tuple[str, Any]) -> BatchOutcome:
        outcome = run_entity(handle, names.SESSION_ENTITY, KEY, state, list(operations))
        assert len(outcome.results) == len(operations)
        assert outcome.raw["signals"] == []
        return outcome

    return run


@pytest.fixture
def pool_entity(app_functions: AppFunctions):
    handle = app_functions.entities[names.POOL_ENTITY]

    def run(state: Any, *operations: tuple[str, Any]) -> BatchOutcome:
        outcome = run_entity(handle, names.POOL_ENTITY, POOL_KEY, state, list(operations))
        assert len(outcome.results) == len(operations)
        return outcome

    return run


def appended(session_entity, count: int) -> dict[str, Any]:
    """The state after ``count`` appends to a fresh session."""
    outcome = session_entity(fresh_state(), *[(names.APPEND, turn(n)) for n in range(1, count + 1)])
    assert not any(r.is_error for r in outcome.results)
    return outcome.state


# -- session entity ---------------------------------------------------------------------------------------------


def test_load_creates_the_entity_with_a_versioned_state(session_entity) -> None:
    outcome = session_entity(None, (names.LOAD, fresh_state()))
    assert outcome.exists is True
    assert outcome.state["schema_version"] == rules.SCHEMA_VERSION
    assert outcome.state["user_id"] == USER and outcome.state["session_id"] == SESSION
    assert outcome.results[0].is_error is False
    assert outcome.results[0].value == outcome.state


def test_load_keeps_a_hot_state(session_entity) -> None:
    hot = appended(session_entity, 1)
    outcome = session_entity(hot, (names.LOAD, fresh_state()))
    assert outcome.state == hot
    assert outcome.results[0].value["turn_count"] == 1


def test_get_answers_the_state_and_changes_nothing(session_entity) -> None:
    hot = appended(session_entity, 2)
    outcome = session_entity(hot, (names.GET, None))
    assert outcome.exists and outcome.state == hot
    assert outcome.results[0].value == hot


def test_get_of_a_session_that_is_not_hot_leaves_no_entity(session_entity) -> None:
    outcome = session_entity(None, (names.GET, None))
    assert outcome.exists is False
    assert outcome.results[0] == OperationResult(False, None)


def test_append_numbers_turns_and_keeps_the_last_k_verbatim(session_entity) -> None:
    outcome = session_entity(fresh_state(), *[(names.APPEND, turn(n)) for n in (1, 2, 3)])
    replies = [r.value for r in outcome.results]
    assert [r["result"]["seq"] for r in replies] == [1, 2, 3]
    assert all(not r["missing"] and not r["ended"] and not r["result"]["duplicate"] for r in replies)
    assert replies[0]["result"]["turn"]["turn_id"] == "t1"
    state = outcome.state
    assert state["turn_count"] == 3
    assert [t["seq"] for t in state["recent"]] == [2, 3]  # K_TURN_BUFFER=2
    assert [t["seq"] for t in state["pending"]] == [1]
    assert state["turn_ids"] == {"t1": 1, "t2": 2, "t3": 3}
    assert state["last_activity"].startswith("2026-05-01T09:03:00")


def test_append_of_a_repeated_turn_id_is_a_duplicate_and_changes_nothing(session_entity) -> None:
    hot = appended(session_entity, 2)
    outcome = session_entity(hot, (names.APPEND, turn(9, turn_id="t1")))
    reply = outcome.results[0].value["result"]
    assert reply["duplicate"] is True and reply["seq"] == 1
    assert reply["turn"]["user_message"] == "user message 1"  # the turn first stored under the id
    assert outcome.state == hot


def test_append_to_a_session_that_is_not_hot_answers_missing_without_creating_it(session_entity) -> None:
    outcome = session_entity(None, (names.APPEND, turn(1)))
    assert outcome.results[0].is_error is False
    assert outcome.results[0].value == {"missing": True, "ended": False, "result": None}
    assert outcome.exists is False
    assert outcome.state is None


def test_append_claims_a_chunk_once_l_turns_are_pending(session_entity) -> None:
    outcome = session_entity(fresh_state(), *[(names.APPEND, turn(n)) for n in (1, 2, 3, 4)])
    compactions = [r.value["result"]["compaction"] for r in outcome.results]
    assert compactions[:3] == [None, None, None]
    claimed = compactions[3]
    assert claimed["index"] == 0 and [t["seq"] for t in claimed["turns"]] == [1, 2]
    assert claimed["previous_summary"] == ""
    assert outcome.state["claimed_through"] == 2 and outcome.state["compacted_through"] == 0
    # While a chunk is claimed, no other is: the next pending pair waits.
    more = session_entity(outcome.state, (names.APPEND, turn(5)), (names.APPEND, turn(6)))
    assert [r.value["result"]["compaction"] for r in more.results] == [None, None]


def test_apply_compaction_folds_the_chunk_and_is_idempotent(session_entity) -> None:
    claimed = appended(session_entity, 4)
    done = {"index": 0, "through_seq": 2, "summary": "turns 1-2"}
    outcome = session_entity(claimed, (names.APPLY_COMPACTION, done))
    assert outcome.results[0] == OperationResult(False, None)  # no next chunk due
    state = outcome.state
    assert state["compacted_through"] == 2 and state["claimed_through"] == 2
    assert state["cumulative_summary"] == "turns 1-2" and state["chunk_count"] == 1
    assert state["pending"] == []
    again = session_entity(state, (names.APPLY_COMPACTION, done))
    assert again.state == state


def test_apply_compaction_claims_the_next_due_chunk(session_entity) -> None:
    claimed = appended(session_entity, 6)  # chunk 0 = 1-2 claimed; 3-4 pending too
    outcome = session_entity(claimed, (names.APPLY_COMPACTION, {"index": 0, "through_seq": 2, "summary": "S1"}))
    following = outcome.results[0].value
    assert following["index"] == 1 and [t["seq"] for t in following["turns"]] == [3, 4]
    assert following["previous_summary"] == "S1"
    assert outcome.state["claimed_through"] == 4


def test_release_claim_lets_a_later_append_claim_the_chunk_again(session_entity) -> None:
    claimed = appended(session_entity, 4)
    released = session_entity(claimed, (names.RELEASE_CLAIM, None))
    assert released.results[0].is_error is False
    assert released.state["claimed_through"] == 0
    outcome = session_entity(released.state, (names.APPEND, turn(5)))
    compaction = outcome.results[0].value["result"]["compaction"]
    assert compaction["index"] == 0 and [t["seq"] for t in compaction["turns"]] == [1, 2]


def test_end_refuses_later_turns_but_accepts_those_received_before_it(session_entity) -> None:
    hot = appended(session_entity, 1)
    end_at = T0 + timedelta(hours=1)
    ended = session_entity(hot, (names.END, {"now": end_at.isoformat()}))
    assert ended.state["status"] == "ended"
    assert ended.results[0].value["ended_at"].startswith("2026-05-01T10:00:00")
    late = session_entity(ended.state, (names.APPEND, turn(2, received=end_at + timedelta(seconds=1))))
    assert late.results[0].value == {"missing": False, "ended": True, "result": None}
    assert late.state == ended.state
    in_flight = session_entity(ended.state, (names.APPEND, turn(3, received=end_at - timedelta(seconds=1))))
    assert in_flight.results[0].value["result"]["seq"] == 2
    assert in_flight.state["turn_count"] == 2 and in_flight.state["status"] == "ended"


def test_ending_twice_keeps_the_first_end(session_entity) -> None:
    hot = appended(session_entity, 1)
    first = session_entity(hot, (names.END, {"now": (T0 + timedelta(hours=1)).isoformat()}))
    second = session_entity(first.state, (names.END, {"now": (T0 + timedelta(hours=2)).isoformat()}))
    assert second.state == first.state


@pytest.mark.parametrize(("cutoff_minutes", "idle"), [(5, True), (1, False)])
def test_evict_reports_whether_the_session_is_idle_and_changes_nothing(
    session_entity, cutoff_minutes: int, idle: bool
) -> None:
    hot = appended(session_entity, 2)  # last activity: T0 + 2 minutes
    outcome = session_entity(hot, (names.EVICT, {"cutoff": (T0 + timedelta(minutes=cutoff_minutes)).isoformat()}))
    assert outcome.results[0].value == {"idle": idle, "state": hot}
    assert outcome.exists and outcome.state == hot


def test_evict_of_a_session_that_is_not_hot_answers_null(session_entity) -> None:
    outcome = session_entity(None, (names.EVICT, {"cutoff": T0.isoformat()}))
    assert outcome.results[0].value is None and outcome.exists is False


def test_delete_if_unchanged_unloads_an_unchanged_session(session_entity) -> None:
    hot = appended(session_entity, 2)
    outcome = session_entity(hot, (names.DELETE_IF_UNCHANGED, {"turn_count": 2}))
    assert outcome.results[0].value is True
    assert outcome.exists is False and outcome.raw["entityState"] == "null"


def test_delete_if_unchanged_keeps_a_session_that_got_a_turn(session_entity) -> None:
    hot = appended(session_entity, 3)
    outcome = session_entity(hot, (names.DELETE_IF_UNCHANGED, {"turn_count": 2}))
    assert outcome.results[0].value is False
    assert outcome.exists and outcome.state == hot


def test_delete_if_unchanged_keeps_an_ended_session(session_entity) -> None:
    hot = appended(session_entity, 2)
    ended = session_entity(hot, (names.END, {"now": (T0 + timedelta(hours=1)).isoformat()})).state
    outcome = session_entity(ended, (names.DELETE_IF_UNCHANGED, {"turn_count": 2}))
    assert outcome.results[0].value is False and outcome.exists


def test_delete_removes_the_entity(session_entity) -> None:
    hot = appended(session_entity, 2)
    outcome = session_entity(hot, (names.DELETE, None))
    assert outcome.results[0] == OperationResult(False, None)
    assert outcome.exists is False and outcome.raw["entityState"] == "null"


def test_operations_sent_without_input_do_not_break_the_batch(session_entity) -> None:
    hot = appended(session_entity, 1)
    outcome = session_entity(
        hot,
        (names.GET, None),
        (names.RELEASE_CLAIM, None),
        (names.APPEND, None),  # append needs a turn: reported as an error, state untouched
        (names.END, None),  # needs "now": an error too
        (names.APPEND, turn(2)),
    )
    flags = [r.is_error for r in outcome.results]
    assert flags == [False, False, True, True, False]
    assert outcome.results[4].value["result"]["seq"] == 2
    assert outcome.state["turn_count"] == 2 and outcome.state["status"] == "active"


def test_load_without_input_on_a_missing_session_is_an_error_and_creates_nothing(session_entity) -> None:
    outcome = session_entity(None, (names.LOAD, None))
    assert outcome.results[0].is_error is True
    assert outcome.exists is False


def test_an_unknown_operation_is_reported_as_an_error(session_entity) -> None:
    hot = appended(session_entity, 1)
    outcome = session_entity(hot, ("frobnicate", {"x": 1}), (names.GET, None))
    assert outcome.results[0].is_error is True
    assert "frobnicate" in outcome.results[0].value
    assert outcome.results[1].is_error is False
    assert outcome.state == hot


def test_an_unknown_operation_on_a_session_that_is_not_hot_is_an_error_too(session_entity) -> None:
    outcome = session_entity(None, ("frobnicate", None))
    assert outcome.results[0].is_error is True
    assert "frobnicate" in outcome.results[0].value
    assert outcome.exists is False


# -- pool entity ------------------------------------------------------------------------------------------------


def entry(minutes: int, turns: int = 1, persisted: int = 1, session_id: str = SESSION) -> dict[str, Any]:
    return {
        "user_id": USER,
        "session_id": session_id,
        "started_at": T0.isoformat(),
        "last_activity": (T0 + timedelta(minutes=minutes)).isoformat(),
        "turn_count": turns,
        "persisted_through": persisted,
    }


def test_pool_touch_records_a_session_and_get_answers_the_pool(pool_entity) -> None:
    outcome = pool_entity(None, (names.TOUCH, {"key": KEY, "entry": entry(1)}), (names.GET, None))
    assert outcome.exists is True
    assert outcome.state["schema_version"] == POOL_SCHEMA_VERSION
    assert outcome.state["sessions"][KEY]["turn_count"] == 1
    assert outcome.results[0] == OperationResult(False, None)
    assert outcome.results[1].value == outcome.state


def test_pool_touch_never_lets_older_news_overwrite_newer(pool_entity) -> None:
    first = pool_entity(None, (names.TOUCH, {"key": KEY, "entry": entry(10, turns=5, persisted=5)}))
    outcome = pool_entity(first.state, (names.TOUCH, {"key": KEY, "entry": entry(3, turns=2, persisted=0)}))
    kept = outcome.state["sessions"][KEY]
    assert kept["turn_count"] == 5 and kept["persisted_through"] == 5
    assert kept["last_activity"].startswith("2026-05-01T09:10:00")


def test_pool_remove_forgets_a_session_and_ignores_unknown_keys(pool_entity) -> None:
    two = pool_entity(
        None,
        (names.TOUCH, {"key": KEY, "entry": entry(1)}),
        (names.TOUCH, {"key": "other", "entry": entry(2, session_id="s2")}),
    )
    outcome = pool_entity(two.state, (names.REMOVE, {"key": KEY}), (names.REMOVE, {"key": "nobody"}))
    assert list(outcome.state["sessions"]) == ["other"]
    assert not any(r.is_error for r in outcome.results)


def test_pool_cleaned_records_the_cleanup_time(pool_entity) -> None:
    outcome = pool_entity(None, (names.CLEANED, {"now": T0.isoformat()}))
    assert outcome.state["last_cleanup"].startswith("2026-05-01T09:00:00")


def test_pool_delete_empties_the_pool(pool_entity) -> None:
    full = pool_entity(None, (names.TOUCH, {"key": KEY, "entry": entry(1)}))
    outcome = pool_entity(full.state, (names.DELETE, None))
    assert outcome.state["sessions"] == {}


def test_pool_reports_bad_input_and_unknown_operations_as_errors(pool_entity) -> None:
    full = pool_entity(None, (names.TOUCH, {"key": KEY, "entry": entry(1)}))
    outcome = pool_entity(full.state, (names.TOUCH, None), ("frobnicate", None), (names.GET, None))
    assert [r.is_error for r in outcome.results] == [True, True, False]
    assert "frobnicate" in outcome.results[1].value
    assert outcome.state == full.state
