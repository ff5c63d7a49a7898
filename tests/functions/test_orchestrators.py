"""The orchestrators replayed episode by episode from DTFx histories, and the activities against a SQLite store."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from memory_core import session as rules
from memory_core.domain import SessionRecord, SessionStatus, Turn
from memory_core.service import MemoryService
from memory_core.session import Compaction, SessionState
from orchestrations import names
from orchestrations.workflows import RETRY
from tests.functions.durable import (
    CALL_ACTIVITY_WITH_RETRY,
    CALL_ENTITY,
    SESSION,
    SIGNAL_ENTITY,
    T0,
    USER,
    AppFunctions,
    History,
    OrchestrationFailed,
    flat_actions,
    iso,
    run_entity,
    run_orchestrator,
    turn_input,
)

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

KEY = names.session_key(USER, SESSION)
SESSION_ID = f"@session@{KEY}"
POOL_ID = f"@pool@{names.POOL_KEY}"
RETRY_OPTIONS = {"firstRetryIntervalInMilliseconds": 2000, "maxNumberOfAttempts": 5}


class Episodes:
    """One orchestration instance: run an episode, answer its new actions, run the next one.

    Sequence ids are handed out as the extension does: each action in order, and each retry timer.
    """

    def __init__(self, handle: Any, name: str, job: Any) -> None:
        self.handle = handle
        self.history = History(name, job, instance_id="u0-inst")
        self.seen = 0
        self.next_id = 0
        self.output: dict[str, Any] = {}

    def step(self) -> list[dict[str, Any]]:
        """Run the orchestrator on the history so far; returns the actions it added."""
        self.output = run_orchestrator(self.handle, self.history)
        actions = flat_actions(self.output)
        new, self.seen = actions[self.seen :], len(actions)
        return new

    @property
    def done(self) -> bool:
        return bool(self.output["isDone"])

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def answer(self, actions: list[dict[str, Any]], *results: Any) -> Episodes:
        """Record each action as scheduled, and the given results of the calls (signals take none), in order."""
        self.history.new_episode()
        pending = list(results)
        for action in actions:
            event_id = self.take_id()
            if action["actionType"] == SIGNAL_ENTITY:
                self.history.signal(event_id, action["instanceId"], action["operation"], json.loads(action["input"]))
            elif action["actionType"] == CALL_ENTITY:
                request = self.history.event_sent(
                    event_id, action["instanceId"], action["operation"], action["input"], signal=False
                )
                self.history.event_raised(request, json.dumps(pending.pop(0)))
            else:
                self.history.task_scheduled(event_id, action["functionName"], json.loads(action["input"]))
                self.history.task_completed(event_id, pending.pop(0))
        assert not pending, "more results than calls"
        return self

    def fail_attempt(self, action: dict[str, Any], reason: str) -> Episodes:
        """One failed attempt of an activity, then the retry timer DTFx schedules after it."""
        self.history.new_episode()
        event_id = self.take_id()
        self.history.task_scheduled(event_id, action["functionName"], json.loads(action["input"]))
        self.history.task_failed(event_id, reason, "Traceback: ...")
        self.history.new_episode(RETRY.first_retry_interval_in_milliseconds / 1000)
        self.history.timer(self.take_id())
        return self

    def retry_succeeds(self, action: dict[str, Any], result: Any) -> Episodes:
        self.history.new_episode()
        event_id = self.take_id()
        self.history.task_scheduled(event_id, action["functionName"], json.loads(action["input"]))
        self.history.task_completed(event_id, result)
        return self


@pytest.fixture
def session_entity(app_functions: AppFunctions):
    """The real session entity, to produce the answers an orchestrator gets: ``(state, result)``."""
    handle = app_functions.entities[names.SESSION_ENTITY]

    def run(state: Any, operation: str, value: Any) -> tuple[Any, Any]:
        outcome = run_entity(handle, names.SESSION_ENTITY, KEY, state, [(operation, value)])
        assert not outcome.results[0].is_error, outcome.results[0].value
        return (outcome.state if outcome.exists else None), outcome.results[0].value

    return run


def hot_state(session_entity, turns: int) -> dict[str, Any]:
    state = rules.new_session(USER, SESSION, T0).model_dump(mode="json")
    for n in range(1, turns + 1):
        state, _ = session_entity(state, names.APPEND, turn_input(n))
    return state


def ingest(app_functions: AppFunctions, n: int, **turn_fields: Any) -> Episodes:
    job = {"user_id": USER, "session_id": SESSION, "turn": turn_input(n, **turn_fields)}
    return Episodes(app_functions.orchestrators[names.INGEST_ORCHESTRATOR], names.INGEST_ORCHESTRATOR, job)


def assert_entity_call(action: dict[str, Any], operation: str, target: str = SESSION_ID) -> Any:
    assert action["actionType"] == CALL_ENTITY
    assert (action["instanceId"], action["operation"]) == (target, operation)
    return json.loads(action["input"])


def assert_signal(action: dict[str, Any], operation: str, target: str = POOL_ID) -> Any:
    assert action["actionType"] == SIGNAL_ENTITY
    assert (action["instanceId"], action["operation"]) == (target, operation)
    return json.loads(action["input"])


def assert_activity(action: dict[str, Any], name: str) -> Any:
    assert action["actionType"] == CALL_ACTIVITY_WITH_RETRY
    assert action["functionName"] == name
    assert action["retryOptions"] == RETRY_OPTIONS
    return json.loads(action["input"])


# -- ingest -----------------------------------------------------------------------------------------------------


def test_ingest_appends_persists_and_touches_the_pool(app_functions, session_entity) -> None:
    run = ingest(app_functions, 1)
    (append,) = run.step()
    assert not run.done
    sent = assert_entity_call(append, names.APPEND)
    assert sent["turn_id"] == "t1" and sent["user_message"] == "user message 1"

    _, reply = session_entity(hot_state(session_entity, 0), names.APPEND, sent)
    touch, persist = run.answer([append], reply).step()
    entry = assert_signal(touch, names.TOUCH)
    assert entry["key"] == KEY
    assert (entry["entry"]["turn_count"], entry["entry"]["persisted_through"]) == (1, 0)
    stored = assert_activity(persist, names.PERSIST_TURN_ACTIVITY)
    assert Turn.model_validate(stored).seq == 1 and stored["turn_id"] == "t1"
    assert not run.done

    (touched,) = run.answer([touch, persist], None).step()
    assert assert_signal(touched, names.TOUCH)["entry"]["persisted_through"] == 1
    assert run.done
    assert run.output["output"] == {"status": "stored", "turn_id": "t1", "seq": 1}


def test_ingest_compacts_a_due_chunk_and_applies_it_through_the_entity(app_functions, session_entity) -> None:
    before = hot_state(session_entity, 3)  # K=2, L=2: the 4th turn makes turns 1-2 a chunk
    run = ingest(app_functions, 4)
    (append,) = run.step()
    _, reply = session_entity(before, names.APPEND, json.loads(append["input"]))
    assert reply["result"]["compaction"]["index"] == 0
    touch, persist = run.answer([append], reply).step()
    touched, compact = run.answer([touch, persist], None).step()
    job = assert_activity(compact, names.COMPACT_ACTIVITY)
    assert Compaction.model_validate(job["compaction"]).through_seq == 2
    assert job["now"].startswith("2026-05-01T09:00:0")  # the orchestration's clock, not the machine's
    (apply,) = run.answer([touched, compact], "turns 1-2 in short").step()
    assert assert_entity_call(apply, names.APPLY_COMPACTION) == {
        "index": 0,
        "through_seq": 2,
        "summary": "turns 1-2 in short",
    }
    assert run.answer([apply], None).step() == []
    assert run.done and run.output["output"] == {"status": "stored", "turn_id": "t4", "seq": 4}


def test_ingest_for_an_evicted_session_loads_it_then_appends(app_functions, session_entity) -> None:
    run = ingest(app_functions, 3)
    (append,) = run.step()
    _, missing = session_entity(None, names.APPEND, json.loads(append["input"]))
    assert missing["missing"] is True
    (load_session,) = run.answer([append], missing).step()
    assert assert_activity(load_session, names.LOAD_SESSION_ACTIVITY)["session_id"] == SESSION

    restored = hot_state(session_entity, 2)
    (load,) = run.answer([load_session], restored).step()
    assert assert_entity_call(load, names.LOAD) == restored
    state, loaded = session_entity(None, names.LOAD, restored)
    (again,) = run.answer([load], loaded).step()
    assert assert_entity_call(again, names.APPEND)["turn_id"] == "t3"

    _, reply = session_entity(state, names.APPEND, json.loads(again["input"]))
    touch, persist = run.answer([again], reply).step()
    assert assert_activity(persist, names.PERSIST_TURN_ACTIVITY)["seq"] == 3
    run.answer([touch, persist], None).step()
    assert run.done and run.output["output"]["seq"] == 3


def test_ingest_into_an_ended_session_is_refused_and_writes_nothing(app_functions, session_entity) -> None:
    ended, _ = session_entity(hot_state(session_entity, 1), names.END, {"now": (T0 + timedelta(hours=1)).isoformat()})
    run = ingest(app_functions, 2, received=T0 + timedelta(hours=2))
    (append,) = run.step()
    _, reply = session_entity(ended, names.APPEND, json.loads(append["input"]))
    assert reply["ended"] is True
    assert run.answer([append], reply).step() == []
    assert run.done
    assert run.output["output"] == {"status": "refused", "reason": "the session has ended", "turn_id": "t2"}


def test_ingest_of_a_duplicate_turn_persists_nothing(app_functions, session_entity) -> None:
    before = hot_state(session_entity, 2)
    run = ingest(app_functions, 2)
    (append,) = run.step()
    _, reply = session_entity(before, names.APPEND, json.loads(append["input"]))
    assert reply["result"]["duplicate"] is True
    assert run.answer([append], reply).step() == []
    assert run.done and run.output["output"] == {"status": "duplicate", "turn_id": "t2", "seq": 2}


def test_an_activity_that_fails_once_is_retried_and_the_ingest_completes(app_functions, session_entity) -> None:
    run = ingest(app_functions, 1)
    (append,) = run.step()
    _, reply = session_entity(hot_state(session_entity, 0), names.APPEND, json.loads(append["input"]))
    touch, persist = run.answer([append], reply).step()
    assert persist["actionType"] == CALL_ACTIVITY_WITH_RETRY and persist["retryOptions"] == RETRY_OPTIONS

    run.history.new_episode()
    run.history.signal(run.take_id(), touch["instanceId"], touch["operation"], json.loads(touch["input"]))
    assert run.step() == []
    run.fail_attempt(persist, "Activity function 'persist_turn' failed: OperationalError('database is locked')")
    assert run.step() == [] and not run.done  # the retry is DTFx's job: no new action
    (touched,) = run.retry_succeeds(persist, None).step()
    assert assert_signal(touched, names.TOUCH)["entry"]["persisted_through"] == 1
    assert run.done and run.output["output"]["status"] == "stored"


def test_a_compaction_that_fails_for_good_releases_the_claim_and_fails_the_ingest(
    app_functions, session_entity
) -> None:
    before = hot_state(session_entity, 3)
    run = ingest(app_functions, 4)
    (append,) = run.step()
    _, reply = session_entity(before, names.APPEND, json.loads(append["input"]))
    touch, persist = run.answer([append], reply).step()
    touched, compact = run.answer([touch, persist], None).step()
    run.history.new_episode()
    run.history.signal(run.take_id(), touched["instanceId"], touched["operation"], json.loads(touched["input"]))
    reason = "Activity function 'compact_chunk' failed: UpstreamUnavailableError('model unreachable')"
    for _ in range(RETRY.max_number_of_attempts - 1):
        assert run.fail_attempt(compact, reason).step() == []
    (release,) = run.fail_attempt(compact, reason).step()
    assert assert_entity_call(release, names.RELEASE_CLAIM) is None
    assert not run.done

    run.answer([release], None)
    with pytest.raises(OrchestrationFailed) as failed:
        run.step()
    assert reason in failed.value.message
    assert reason in failed.value.state["error"]
    assert failed.value.state["isDone"] is False
    # Nothing after the release: no apply_compaction, no further write.
    actions = flat_actions(failed.value.state)
    assert [a.get("operation") or a.get("functionName") for a in actions] == [
        names.APPEND,
        names.TOUCH,
        names.PERSIST_TURN_ACTIVITY,
        names.TOUCH,
        names.COMPACT_ACTIVITY,
        names.RELEASE_CLAIM,
    ]


def test_replaying_a_completed_ingest_repeats_no_side_effect(app_functions, session_entity) -> None:
    run = ingest(app_functions, 1)
    (append,) = run.step()
    _, reply = session_entity(hot_state(session_entity, 0), names.APPEND, json.loads(append["input"]))
    touch, persist = run.answer([append], reply).step()
    run.answer([touch, persist], None).step()
    assert run.done
    first = run.output

    # The same history again (a replay after a worker restart), and once more with every event played.
    assert run_orchestrator(run.handle, run.history) == first
    run.history.new_episode()
    replayed = run_orchestrator(run.handle, run.history)
    assert replayed == first
    scheduled = [e for e in run.history.events if e["EventType"] in (4, 14)]  # TaskScheduled, EventSent
    assert len(flat_actions(replayed)) == len(scheduled) + 1  # only the last touch was not in the history yet


# -- reflection -------------------------------------------------------------------------------------------------


def reflection(app_functions: AppFunctions) -> Episodes:
    return Episodes(
        app_functions.orchestrators[names.REFLECTION_ORCHESTRATOR],
        names.REFLECTION_ORCHESTRATOR,
        {"user_id": USER, "session_id": SESSION},
    )


OUTCOME = {
    "user_id": USER,
    "session_id": SESSION,
    "turn_count": 3,
    "summary_id": "summary-1",
    "summary": "The user talked about Lisbon.",
    "insights_added": ["insight-a"],
    "insights_updated": ["insight-b"],
    "insights_superseded": ["insight-c"],
    "duplicates": 1,
}


def play_reflection(app_functions, session_entity) -> Episodes:
    run = reflection(app_functions)
    (end,) = run.step()
    now = assert_entity_call(end, names.END)["now"]
    assert now.startswith("2026-05-01T09:00:00")
    ended, state = session_entity(hot_state(session_entity, 3), names.END, {"now": now})
    (save,) = run.answer([end], state).step()
    saved = assert_activity(save, names.SAVE_SESSION_ACTIVITY)
    assert saved == {"user_id": USER, "session_id": SESSION, "state": ended, "status": "ended"}
    (reflect,) = run.answer([save], None).step()
    assert assert_activity(reflect, names.REFLECT_ACTIVITY) == {"user_id": USER, "session_id": SESSION, "now": now}
    (delete,) = run.answer([reflect], OUTCOME).step()
    assert assert_entity_call(delete, names.DELETE) is None
    (leave,) = run.answer([delete], None).step()
    assert assert_signal(leave, names.REMOVE) == {"key": KEY}
    return run


def test_reflection_ends_saves_reflects_unloads_and_leaves_the_pool(app_functions, session_entity) -> None:
    run = play_reflection(app_functions, session_entity)
    assert run.done
    output = run.output["output"]
    assert output == OUTCOME
    assert output["summary"] and output["insights_added"] and output["insights_updated"]
    assert output["insights_superseded"] == ["insight-c"]


def test_reflection_logs_its_outcome_only_when_not_replaying(app_functions, session_entity, caplog) -> None:
    caplog.set_level(logging.INFO, logger="orchestrations.workflows")
    run = play_reflection(app_functions, session_entity)
    assert [r.getMessage() for r in caplog.records if "Reflection of" in r.getMessage()] == [
        "Reflection of alice/s1 done (instance u0-inst): 1 insights added, 1 updated, 1 superseded"
    ]
    caplog.clear()
    run.history.new_episode()  # every event played: a pure replay
    again = run_orchestrator(run.handle, run.history)
    assert again["isDone"] and again["actions"] == run.output["actions"]
    assert not [r for r in caplog.records if "Reflection of" in r.getMessage()]


def test_reflection_of_a_session_that_is_not_hot_saves_without_state(app_functions) -> None:
    run = reflection(app_functions)
    (end,) = run.step()
    (save,) = run.answer([end], None).step()
    assert assert_activity(save, names.SAVE_SESSION_ACTIVITY)["state"] is None


# -- eviction ---------------------------------------------------------------------------------------------------


def eviction(app_functions: AppFunctions, cutoff_minutes: int) -> Episodes:
    cutoff = (T0 + timedelta(minutes=cutoff_minutes)).isoformat()
    return Episodes(
        app_functions.orchestrators[names.EVICTION_ORCHESTRATOR],
        names.EVICTION_ORCHESTRATOR,
        {"user_id": USER, "session_id": SESSION, "cutoff": cutoff},
    )


def test_eviction_of_an_active_session_saves_nothing_and_corrects_the_pool(app_functions, session_entity) -> None:
    state = hot_state(session_entity, 2)  # last activity T0+2min
    run = eviction(app_functions, 1)
    (evict,) = run.step()
    _, check = session_entity(state, names.EVICT, assert_entity_call(evict, names.EVICT))
    assert check["idle"] is False
    (touch,) = run.answer([evict], check).step()
    entry = assert_signal(touch, names.TOUCH)["entry"]
    assert entry["turn_count"] == 2 and entry["last_activity"].startswith("2026-05-01T09:02:00")
    assert run.done and run.output["output"] == {"evicted": False, "reason": "active"}
    assert all(a["actionType"] != CALL_ACTIVITY_WITH_RETRY for a in flat_actions(run.output))


def test_eviction_of_an_idle_session_saves_it_then_unloads_it(app_functions, session_entity) -> None:
    state = hot_state(session_entity, 2)
    run = eviction(app_functions, 30)
    (evict,) = run.step()
    _, check = session_entity(state, names.EVICT, json.loads(evict["input"]))
    assert check["idle"] is True
    (save,) = run.answer([evict], check).step()
    assert assert_activity(save, names.SAVE_SESSION_ACTIVITY) == {
        "user_id": USER,
        "session_id": SESSION,
        "state": state,
        "status": "idle",
    }
    (unload,) = run.answer([save], None).step()
    sent = assert_entity_call(unload, names.DELETE_IF_UNCHANGED)
    assert sent == {"turn_count": 2}
    gone, unloaded = session_entity(state, names.DELETE_IF_UNCHANGED, sent)
    assert unloaded is True and gone is None
    (leave,) = run.answer([unload], unloaded).step()
    assert assert_signal(leave, names.REMOVE) == {"key": KEY}
    assert run.done and run.output["output"] == {"evicted": True, "turn_count": 2}


def test_eviction_keeps_a_session_that_got_a_turn_while_saving(app_functions, session_entity) -> None:
    state = hot_state(session_entity, 2)
    run = eviction(app_functions, 30)
    (evict,) = run.step()
    _, check = session_entity(state, names.EVICT, json.loads(evict["input"]))
    (save,) = run.answer([evict], check).step()
    (unload,) = run.answer([save], None).step()
    assert run.answer([unload], False).step() == []  # a turn came: the entity kept the session
    assert run.done and run.output["output"] == {"evicted": False, "turn_count": 2}


def test_eviction_of_an_ending_session_keeps_it(app_functions, session_entity) -> None:
    ended, _ = session_entity(hot_state(session_entity, 1), names.END, {"now": (T0 + timedelta(minutes=5)).isoformat()})
    run = eviction(app_functions, 30)
    (evict,) = run.step()
    _, check = session_entity(ended, names.EVICT, json.loads(evict["input"]))
    (touch,) = run.answer([evict], check).step()
    assert touch["actionType"] == SIGNAL_ENTITY
    assert run.done and run.output["output"] == {"evicted": False, "reason": "ending"}


def test_eviction_of_a_session_that_is_not_hot_only_leaves_the_pool(app_functions) -> None:
    run = eviction(app_functions, 30)
    (evict,) = run.step()
    (leave,) = run.answer([evict], None).step()
    assert assert_signal(leave, names.REMOVE) == {"key": KEY}
    assert run.done and run.output["output"] == {"evicted": False, "reason": "not hot"}


# -- activities -------------------------------------------------------------------------------------------------


def activity(app_functions: AppFunctions, name: str):
    fn, input_name = app_functions.activities[name]
    return lambda value: fn(**{input_name: value})


def stored_turn(n: int) -> Turn:
    data = turn_input(n)
    del data["received_at"]
    return Turn.model_validate({**data, "user_id": USER, "session_id": SESSION, "seq": n})


async def put_record(service: MemoryService, status: SessionStatus, turns: int, **fields: Any) -> None:
    await service.store.put_session(
        SessionRecord(
            user_id=USER,
            session_id=SESSION,
            status=status,
            started_at=T0,
            last_activity=T0 + timedelta(minutes=turns),
            turn_count=turns,
            **fields,
        )
    )


async def test_persist_turn_activity_writes_the_turn_once(app_functions, service: MemoryService) -> None:
    persist = activity(app_functions, names.PERSIST_TURN_ACTIVITY)
    turn = stored_turn(1).model_dump(mode="json")
    assert await persist(turn) is None
    await persist(turn)  # a retried activity
    assert [t.turn_id for t in await service.store.get_turns(USER, SESSION)] == ["t1"]


async def test_load_session_activity_restores_an_idle_session(app_functions, service: MemoryService) -> None:
    await put_record(service, SessionStatus.IDLE, 3)
    await service.store.put_turns([stored_turn(n) for n in (1, 2, 3)])
    load = activity(app_functions, names.LOAD_SESSION_ACTIVITY)
    state = SessionState.model_validate(await load({"user_id": USER, "session_id": SESSION, "turn": turn_input(4)}))
    assert state.restored and state.turn_count == 3
    assert [t.seq for t in state.recent] == [2, 3] and [t.seq for t in state.pending] == [1]
    record = await service.store.get_session(USER, SESSION)
    assert record is not None and record.status is SessionStatus.ACTIVE


async def test_compact_chunk_activity_writes_the_chunk_and_advances_the_record(
    app_functions, service: MemoryService
) -> None:
    await put_record(service, SessionStatus.ACTIVE, 2)
    compaction = Compaction(
        user_id=USER, session_id=SESSION, index=0, turns=(stored_turn(1), stored_turn(2)), previous_summary=""
    )
    compact = activity(app_functions, names.COMPACT_ACTIVITY)
    summary = await compact({"compaction": compaction.model_dump(mode="json"), "now": iso(T0 + timedelta(hours=1))})
    assert isinstance(summary, str) and summary
    (chunk,) = await service.store.get_chunks(USER, SESSION)
    assert (chunk.index, chunk.first_seq, chunk.last_seq) == (0, 1, 2)
    record = await service.store.get_session(USER, SESSION)
    assert record is not None
    assert (record.compacted_through, record.chunk_count, record.cumulative_summary) == (2, 1, summary)


async def test_save_session_activity_writes_missing_turns_and_the_idle_record(
    app_functions, service: MemoryService
) -> None:
    await put_record(service, SessionStatus.ACTIVE, 0)
    await service.store.put_turns([stored_turn(1)])
    state = rules.new_session(USER, SESSION, T0)
    for n in (1, 2):
        state, _ = rules.append_turn(
            state, rules.TurnInput.model_validate(turn_input(n)), 2, 2, T0 + timedelta(minutes=n)
        )
    save = activity(app_functions, names.SAVE_SESSION_ACTIVITY)
    await save({"user_id": USER, "session_id": SESSION, "state": state.model_dump(mode="json"), "status": "idle"})
    assert [t.seq for t in await service.store.get_turns(USER, SESSION)] == [1, 2]
    record = await service.store.get_session(USER, SESSION)
    assert record is not None and record.status is SessionStatus.IDLE and record.turn_count == 2


async def test_save_session_activity_without_state_only_ends_the_record(app_functions, service: MemoryService) -> None:
    await put_record(service, SessionStatus.IDLE, 2)
    save = activity(app_functions, names.SAVE_SESSION_ACTIVITY)
    await save({"user_id": USER, "session_id": SESSION, "state": None, "status": "ended"})
    record = await service.store.get_session(USER, SESSION)
    assert record is not None and record.status is SessionStatus.ENDED and record.ended_at is not None
    assert record.turn_count == 2


async def test_reflect_activity_writes_a_summary_and_insights_once(app_functions, service: MemoryService) -> None:
    await put_record(service, SessionStatus.ENDED, 3)
    facts = ["I live in Lisbon.", "I work as a nurse.", "I love hiking in the mountains."]
    turns = [
        stored_turn(n).model_copy(update={"user_message": fact, "agent_message": "Good to know."})
        for n, fact in enumerate(facts, start=1)
    ]
    await service.store.put_turns(turns)
    reflect = activity(app_functions, names.REFLECT_ACTIVITY)
    job = {"user_id": USER, "session_id": SESSION, "now": iso(T0 + timedelta(hours=1))}
    outcome = await reflect(job)
    assert outcome["turn_count"] == 3 and outcome["summary"]
    assert outcome["insights_added"]
    (summary,) = await service.store.get_summaries(USER)
    assert summary.summary == outcome["summary"] and summary.id == outcome["summary_id"]
    insights = await service.store.get_insights(USER)
    assert {i.id for i in insights} == set(outcome["insights_added"])
    assert any("Lisbon" in i.text for i in insights)

    again = await reflect(job)  # a retried activity writes nothing new
    assert again["insights_added"] == [] and again["duplicates"] == len(outcome["insights_added"])
    assert len(await service.store.get_insights(USER)) == len(insights)
