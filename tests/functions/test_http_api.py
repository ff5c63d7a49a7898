"""Every HTTP endpoint through its registered function, with real ``func.HttpRequest`` objects and a local task hub."""

from __future__ import annotations

import importlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_core import models, use_cases
from memory_core.context import default_counter
from memory_core.domain import SessionRecord, SessionStatus, Turn
from memory_core.runtime import close_service
from memory_core.service import MemoryService
from orchestrations import names
from tests.functions.api_client import Api
from tests.functions.taskhub import TaskHub

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

USER = "alice"
COUNT = default_counter().count
workflows = importlib.import_module(
    "orchestrations.workflows"
)  # the module: the package's `workflows` is its blueprint
NOT_FOUND = {"error": "SessionNotFoundError", "detail": "Session not found", "field": "session_id"}

# A valid body of every POST endpoint, by function name.
VALID = {
    "start_session": {"user_id": USER},
    "end_session": {"user_id": USER, "session_id": "s1"},
    "get_context": {"user_id": USER, "session_id": "s1"},
    "store_turn": {"user_id": USER, "session_id": "s1", "user_message": "Hi", "agent_message": "Hello"},
    "retrieve": {"user_id": USER, "query": "Lisbon"},
    "insights": {"user_id": USER},
    "summaries": {"user_id": USER},
}
REQUESTS = {
    "start_session": models.StartSessionRequest,
    "end_session": models.EndSessionRequest,
    "get_context": models.ContextRequest,
    "store_turn": models.StoreTurnRequest,
    "retrieve": models.RetrieveRequest,
    "insights": models.InsightsRequest,
    "summaries": models.SummariesRequest,
}
FACTS = ["I live in Lisbon.", "I work as a nurse.", "I love hiking in the mountains."]


def entity_key(session_id: str, user_id: str = USER) -> str:
    return names.session_key(user_id, session_id)


async def start(api: Api, session_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": USER, **fields}
    if session_id is not None:
        body["session_id"] = session_id
    reply = await api.post("start_session", body)
    assert reply.status == 200, reply.body
    return reply.body


async def store(api: Api, session_id: str, user_message: str, **fields: Any) -> Any:
    body = {"user_id": USER, "session_id": session_id, "user_message": user_message, "agent_message": "Noted."}
    return await api.post("store_turn", {**body, **fields})


async def evicted_session(service: MemoryService, session_id: str, turns: int) -> None:
    """A session as eviction leaves it: an idle store record and its turns, no entity."""
    t0 = datetime.now(UTC) - timedelta(hours=1)
    await service.store.put_session(
        SessionRecord(
            user_id=USER,
            session_id=session_id,
            status=SessionStatus.IDLE,
            started_at=t0,
            last_activity=t0 + timedelta(minutes=turns),
            turn_count=turns,
        )
    )
    await service.store.put_turns(
        [
            Turn(
                user_id=USER,
                session_id=session_id,
                seq=n,
                turn_id=f"t{n}",
                user_message=f"old question {n}",
                agent_message=f"old answer {n}",
                timestamp=t0 + timedelta(minutes=n),
            )
            for n in range(1, turns + 1)
        ]
    )


def fail_reflections(monkeypatch: pytest.MonkeyPatch, error: Exception, times: int) -> None:
    """The next ``times`` reflections raise ``error``; the activity's retries follow one another at once (the app's
    policy waits 2 s before each)."""
    real = MemoryService.reflect
    left = [times]

    async def reflect(self: MemoryService, *args: Any, **kwargs: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            raise error
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(MemoryService, "reflect", reflect)
    attempts = workflows.RETRY.max_number_of_attempts
    monkeypatch.setattr(
        workflows, "RETRY", df.RetryOptions(first_retry_interval_in_milliseconds=1, max_number_of_attempts=attempts)
    )


async def finished_session(api: Api, session_id: str = "done") -> dict[str, Any]:
    """A session with three facts, ended and reflected (needs a client that runs orchestrations)."""
    await start(api, session_id, restore=False)
    for fact in FACTS:
        assert (await store(api, session_id, fact)).status == 201
    ended = await api.post("end_session", {"user_id": USER, "session_id": session_id})
    assert ended.status == 202, ended.body
    return ended.body


# -- /sessions/start --------------------------------------------------------------------------------------------


async def test_start_without_id_creates_a_session_with_a_generated_id(
    api: Api, hub: TaskHub, service: MemoryService
) -> None:
    body = await start(api)
    assert re.fullmatch(r"[0-9a-f]{32}", body["session_id"])
    assert body["user_id"] == USER and body["restored"] is False and body["turn_count"] == 0
    assert set(body) == set(models.ContextResponse.model_fields)
    record = await service.store.get_session(USER, body["session_id"])
    assert record is not None and record.status is SessionStatus.ACTIVE
    assert await hub.entities() == set() and hub.client.starts == []  # nothing of Durable on the request path


async def test_start_with_restore_false_and_an_explicit_id_creates_it(api: Api) -> None:
    body = await start(api, "s1", restore=False)
    assert body["session_id"] == "s1" and body["restored"] is False


async def test_start_with_restore_of_a_hot_session_is_not_a_restore(api: Api) -> None:
    await start(api, "s1", restore=False)
    body = await start(api, "s1", restore=True)
    assert body["session_id"] == "s1" and body["restored"] is False


async def test_start_with_restore_of_an_evicted_session_restores_it(api: Api, service: MemoryService) -> None:
    await evicted_session(service, "s1", 3)
    body = await start(api, "s1", restore=True)
    assert body["restored"] is True and body["turn_count"] == 3
    assert [m["content"] for m in body["active_context"]] == [
        "old question 2",
        "old answer 2",
        "old question 3",
        "old answer 3",
    ]
    record = await service.store.get_session(USER, "s1")
    assert record is not None and record.status is SessionStatus.ACTIVE


async def test_a_restored_session_is_hot_afterwards(api: Api, service: MemoryService) -> None:
    await evicted_session(service, "s1", 2)
    assert (await start(api, "s1"))["restored"] is True
    assert (await start(api, "s1"))["restored"] is False
    context = await api.post("get_context", {"user_id": USER, "session_id": "s1"})
    assert context.body["restored"] is False


async def test_start_with_restore_of_an_unknown_id_starts_that_session(api: Api, service: MemoryService) -> None:
    # The guide's own client sends a session_id of its own choosing with restore=true and expects a session.
    body = await start(api, "2c1a6f0e-7f1e-4a53-9d0e-1f2a3b4c5d6e", restore=True)
    assert body["session_id"] == "2c1a6f0e-7f1e-4a53-9d0e-1f2a3b4c5d6e" and body["restored"] is False
    assert await service.store.get_session(USER, body["session_id"]) is not None


async def test_start_with_restore_of_an_ended_session_is_404(running_api: Api) -> None:
    await finished_session(running_api, "s1")
    reply = await running_api.post("start_session", {"user_id": USER, "session_id": "s1"})
    assert (reply.status, reply.body) == (404, NOT_FOUND)


async def test_start_under_a_taken_id_is_409(api: Api) -> None:
    await start(api, "s1", restore=False)
    reply = await api.post("start_session", {"user_id": USER, "session_id": "s1", "restore": False})
    assert reply.status == 409
    assert reply.body["error"] == "ConflictError" and reply.body["field"] == "session_id"


# -- /memory/store ----------------------------------------------------------------------------------------------


async def test_store_answers_once_the_turn_is_stored(api: Api, hub: TaskHub, service: MemoryService) -> None:
    await start(api, "s1", restore=False)
    reply = await store(api, "s1", "I live in Lisbon.", turn_id="turn-1", metadata={"lang": "en"})
    assert reply.status == 201
    assert reply.body == {
        "status": "stored",
        "user_id": USER,
        "session_id": "s1",
        "turn_id": "turn-1",
        "seq": 1,
        "duplicate": False,
    }
    (stored,) = await service.store.get_turns(USER, "s1")
    assert (stored.turn_id, stored.user_message, stored.metadata) == ("turn-1", "I live in Lisbon.", {"lang": "en"})
    assert hub.client.starts == [] and await hub.entities() == set()  # one turn starts no background work


async def test_store_generates_a_turn_id_when_none_is_given(api: Api) -> None:
    await start(api, "s1", restore=False)
    reply = await store(api, "s1", "Hello")
    assert reply.status == 201 and re.fullmatch(r"[0-9a-f]{32}", reply.body["turn_id"])


async def test_a_turn_that_makes_a_chunk_due_starts_one_batch_of_background_work(api: Api, hub: TaskHub) -> None:
    await start(api, "s1", restore=False)
    for n in range(1, 8):
        assert (await store(api, "s1", f"message {n}", turn_id=f"t{n}")).status == 201
    # K=2, L=2: chunk 1-2 is due at turn 4, chunk 3-4 at turn 6; each starts one instance, with ids and counts only.
    assert hub.client.starts == [
        (
            names.BATCH_ORCHESTRATOR,
            names.batch_instance_id(USER, "s1", 4),
            {"user_id": USER, "session_id": "s1", "through_seq": 4},
        ),
        (
            names.BATCH_ORCHESTRATOR,
            names.batch_instance_id(USER, "s1", 6),
            {"user_id": USER, "session_id": "s1", "through_seq": 6},
        ),
    ]
    assert all(i.startswith(names.user_prefix(USER)) for _, i, _ in hub.client.starts)


async def test_background_work_compacts_chunks_in_order_and_keeps_the_entity_small(
    running_api: Api, running_hub: TaskHub, service: MemoryService
) -> None:
    await start(running_api, "s1", restore=False)
    for n in range(1, 8):
        assert (await store(running_api, "s1", f"message {n} " + "x" * 30_000, turn_id=f"t{n}")).status == 201
    assert set((await running_hub.statuses()).values()) == {"Completed"}
    record = await service.store.get_session(USER, "s1")
    # K=2, L=2: after 7 turns chunks 1-2 and 3-4 are folded (5-6 waits for two turns after it).
    assert (record.turn_count, record.compacted_through, record.chunk_count, record.indexed_through) == (7, 4, 2, 6)
    assert [(c.first_seq, c.last_seq) for c in await service.store.get_chunks(USER, "s1")] == [(1, 2), (3, 4)]
    state = await running_hub.entity_state(names.SESSION_ENTITY, entity_key("s1"))
    assert (state["turn_count"], state["compacted_through"], state["claimed_through"]) == (6, 4, 4)
    assert state["cumulative_summary"] == record.cumulative_summary
    assert len(json.dumps(state)) < 8 * 1024  # 30,000-character messages never reach the entity
    for instance in (await running_hub.instances()).values():
        assert len(json.dumps(instance.input_)) < 8 * 1024
    context = await running_api.post("get_context", {"user_id": USER, "session_id": "s1"})
    assert context.body["turn_count"] == 7 and context.body["cumulative_summary"] == record.cumulative_summary


async def test_a_batch_that_cannot_be_started_leaves_the_turn_stored(
    api: Api, hub: TaskHub, service: MemoryService, caplog: pytest.LogCaptureFixture
) -> None:
    await start(api, "s1", restore=False)
    for n in range(1, 4):
        await store(api, "s1", f"message {n}", turn_id=f"t{n}")

    async def broken(*args: Any, **kwargs: Any) -> str:
        raise Exception("task hub storage unavailable: secret-connection-string")

    hub.client.start_new = broken  # type: ignore[method-assign]
    reply = await store(api, "s1", "four", turn_id="t4")  # K=2, L=2: turn 4 makes chunk 1-2 due
    assert reply.status == 201 and reply.body["seq"] == 4
    assert [t.turn_id for t in await service.store.get_turns(USER, "s1")] == ["t1", "t2", "t3", "t4"]
    assert "the cleanup timer will" in caplog.text and "secret" not in reply.text


async def test_store_into_an_evicted_session_makes_it_hot_again(api: Api, service: MemoryService) -> None:
    await evicted_session(service, "s1", 2)
    reply = await store(api, "s1", "back again", turn_id="t3")
    assert reply.status == 201 and reply.body["seq"] == 3
    record = await service.store.get_session(USER, "s1")
    assert record.status is SessionStatus.ACTIVE and record.turn_count == 3


async def test_store_into_an_unknown_session_is_404(api: Api, hub: TaskHub) -> None:
    reply = await store(api, "nope", "Hi")
    assert (reply.status, reply.body) == (404, NOT_FOUND)
    assert hub.client.starts == []


async def test_store_after_end_was_answered_is_409_at_once(api: Api, hub: TaskHub) -> None:
    # The reflection has not even started: the store knows the session ended, and refuses the turn now.
    await start(api, "s1", restore=False)
    assert (await api.post("end_session", {"user_id": USER, "session_id": "s1"})).status == 202
    reply = await store(api, "s1", "Too late", turn_id="late")
    assert reply.status == 409 and reply.body["error"] == "SessionEndedError" and reply.body["field"] == "session_id"
    assert [s for s in hub.client.starts if s[0] == names.BATCH_ORCHESTRATOR] == []


async def test_a_retried_turn_is_the_same_turn_at_any_distance(api: Api, service: MemoryService) -> None:
    await start(api, "s1", restore=False)
    first = await store(api, "s1", "Hi", turn_id="t1")
    for n in range(2, 30):
        await store(api, "s1", f"message {n}", turn_id=f"t{n}")
    again = await store(api, "s1", "Hi", turn_id="t1")
    assert (first.status, again.status) == (201, 200)
    assert again.body == {**first.body, "duplicate": True}
    assert len(await service.store.get_turns(USER, "s1")) == 29


async def test_a_turn_id_reused_for_other_content_is_409_naming_the_field(api: Api) -> None:
    await start(api, "s1", restore=False)
    await store(api, "s1", "Hi", turn_id="t1")
    reply = await store(api, "s1", "Something else", turn_id="t1")
    assert reply.status == 409
    assert reply.body["error"] == "ConflictError" and reply.body["field"] == "user_message"
    assert "t1" in reply.body["detail"]


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+01:00", "0999-12-31T23:59:59+00:00", "9999-12-31T23:00:00-05:00"]
)
async def test_a_timestamp_no_store_can_represent_is_400_and_stores_nothing(
    api: Api, service: MemoryService, timestamp: str
) -> None:
    await start(api, "s1", restore=False)
    reply = await store(api, "s1", "Hi", turn_id="t1", timestamp=timestamp)
    assert reply.status == 400 and reply.body["field"] == "timestamp"
    assert "1000 and 9999" in reply.body["detail"]
    assert await service.store.get_turns(USER, "s1") == []


async def test_turns_from_one_client_keep_the_order_they_were_sent_in(api: Api, service: MemoryService) -> None:
    await start(api, "s1", restore=False)
    seqs = [(await store(api, "s1", f"message {n}", turn_id=f"t{n}")).body["seq"] for n in range(10)]
    assert seqs == list(range(1, 11))
    assert [t.turn_id for t in await service.store.get_turns(USER, "s1")] == [f"t{n}" for n in range(10)]


# -- /memory/context --------------------------------------------------------------------------------------------


async def test_context_of_a_hot_session(api: Api) -> None:
    await start(api, "s1", restore=False)
    reply = await api.post("get_context", {"user_id": USER, "session_id": "s1"})
    assert reply.status == 200
    assert reply.body["session_id"] == "s1" and reply.body["restored"] is False
    assert reply.body["active_context"] == [] and isinstance(reply.body["formatted_context"], str)


async def test_context_of_an_evicted_session_restores_it(api: Api, service: MemoryService) -> None:
    await evicted_session(service, "s1", 1)
    reply = await api.post("get_context", {"user_id": USER, "session_id": "s1"})
    assert reply.status == 200 and reply.body["restored"] is True and reply.body["turn_count"] == 1


async def test_context_of_an_unknown_session_is_404(api: Api) -> None:
    reply = await api.post("get_context", {"user_id": USER, "session_id": "nope"})
    assert (reply.status, reply.body) == (404, NOT_FOUND)


async def test_context_shows_a_stored_turn_at_once_with_no_background_work_run(api: Api, hub: TaskHub) -> None:
    await start(api, "s1", restore=False)
    for n in range(1, 4):
        stored = await store(api, "s1", f"message {n}", turn_id=f"t{n}")
        reply = await api.post("get_context", {"user_id": USER, "session_id": "s1"})
        assert reply.body["turn_count"] == n
        assert reply.body["active_context"][-2] == {"role": "user", "content": f"message {n}"}
        with_id = await api.post(
            "get_context", {"user_id": USER, "session_id": "s1", "after_turn_id": stored.body["turn_id"]}
        )
        assert with_id.status == 200 and with_id.body == reply.body
    assert all(status == "Pending" for status in (await hub.statuses()).values())


async def test_context_after_a_turn_that_was_never_stored_is_404_naming_it(api: Api) -> None:
    await start(api, "s1", restore=False)
    await store(api, "s1", "Hi", turn_id="t1")
    reply = await api.post("get_context", {"user_id": USER, "session_id": "s1", "after_turn_id": "t2"})
    assert reply.status == 404
    assert reply.body["field"] == "after_turn_id" and "'t2'" in reply.body["detail"]


# -- retrieval, insights, summaries -----------------------------------------------------------------------------


async def test_retrieve_finds_a_turn_as_soon_as_it_is_stored(api: Api) -> None:
    await start(api, "s1", restore=False)
    await store(api, "s1", "I live in Lisbon.")
    reply = await api.post("retrieve", {"user_id": USER, "query": "Where does the user live? Lisbon"})
    assert reply.status == 200
    body = reply.body
    assert body["count"] == len(body["facts"]) == len(body["items"]) == 1
    assert "Lisbon" in body["facts"][0]
    assert {"kind", "text", "score", "session_id", "turn_seqs", "timestamp"} <= set(body["items"][0])
    assert [i["text"] for i in body["items"]] == body["facts"]


async def test_retrieve_filters_by_kind_session_and_time(api: Api) -> None:
    await start(api, "s1", restore=False)
    await store(api, "s1", "I live in Lisbon.", timestamp="2026-01-10T09:00:00Z")
    await start(api, "s2", restore=False)
    await store(api, "s2", "Lisbon is sunny today.", timestamp="2026-02-10T09:00:00Z")
    query = {"user_id": USER, "query": "Lisbon"}

    async def sessions(**filters: Any) -> list[str | None]:
        reply = await api.post("retrieve", {**query, **filters})
        assert reply.status == 200, reply.body
        return sorted(item["session_id"] for item in reply.body["items"])

    assert await sessions() == ["s1", "s2"]
    assert await sessions(session_ids=["s2"]) == ["s2"]
    assert await sessions(since="2026-02-01T00:00:00+01:00") == ["s2"]
    assert await sessions(until="2026-02-01T00:00:00Z") == ["s1"]
    assert await sessions(as_of="2026-01-31T00:00:00Z") == ["s1"]
    assert await sessions(kinds=["turn"]) == ["s1", "s2"]
    assert await sessions(kinds=["insight", "summary"]) == []


async def test_retrieve_with_a_budget_returns_what_fits_and_says_what_it_took(api: Api) -> None:
    await start(api, "s1", restore=False)
    for n in range(8):
        await store(api, "s1", f"My cat Tom likes fish number {n}, and sleeps all afternoon in the sun.")
    whole = await api.post("retrieve", {"user_id": USER, "query": "cat Tom fish", "top_k": 8})
    assert whole.status == 200 and whole.body["count"] == 8
    assert whole.body["tokens"] == sum(COUNT(t) for t in whole.body["facts"])
    reply = await api.post("retrieve", {"user_id": USER, "query": "cat Tom fish", "max_tokens": 60})
    body = reply.body
    assert reply.status == 200 and 1 <= body["count"] < 8
    assert body["tokens"] == sum(COUNT(t) for t in body["facts"]) <= 60
    assert all(any(fact in whole_text for whole_text in whole.body["facts"]) for fact in body["facts"])


async def test_retrieve_for_a_user_without_memory_finds_nothing(api: Api) -> None:
    reply = await api.post("retrieve", {"user_id": "nobody", "query": "anything"})
    empty = {"query": "anything", "facts": [], "count": 0, "items": [], "tokens": 0}
    assert reply.status == 200 and reply.body == empty


async def test_insights_lists_texts_and_items(running_api: Api) -> None:
    await finished_session(running_api)
    reply = await running_api.post("insights", {"user_id": USER})
    assert reply.status == 200
    body = reply.body
    assert body["user_id"] == USER and body["count"] == len(body["insights"]) == len(body["items"]) > 0
    assert all(isinstance(text, str) for text in body["insights"])
    assert any("Lisbon" in text for text in body["insights"])
    item = body["items"][0]
    assert item["source_session_id"] == "done" and item["status"] == "active"


async def test_summaries_lists_the_sessions_newest_first(running_api: Api) -> None:
    await finished_session(running_api, "first")
    await finished_session(running_api, "second")
    reply = await running_api.post("summaries", {"user_id": USER, "limit": 5})
    assert reply.status == 200
    body = reply.body
    assert body["count"] == 2 and len(body["summaries"]) == 2
    assert [i["session_id"] for i in body["items"]] == ["second", "first"]
    assert body["summaries"] == [i["summary"] for i in body["items"]]


# -- /sessions/end ----------------------------------------------------------------------------------------------


async def test_end_marks_the_session_and_starts_the_reflection(api: Api, hub: TaskHub, service: MemoryService) -> None:
    await start(api, "s1", restore=False)
    reply = await api.post("end_session", {"user_id": USER, "session_id": "s1"})
    assert reply.status == 202
    instance_id = names.reflection_instance_id(USER, "s1")
    assert reply.body["id"] == instance_id and reply.body["status"] == "reflecting"
    # The status URL is this service's own route (the caller's key), never Durable's API with its system key.
    assert reply.body["statusQueryGetUri"] == "http://localhost:7071/sessions/reflection?user_id=alice&session_id=s1"
    assert set(reply.body) == {"user_id", "session_id", "status", "id", "statusQueryGetUri"}
    assert hub.client.starts == [(names.REFLECTION_ORCHESTRATOR, instance_id, {"user_id": USER, "session_id": "s1"})]
    assert (await service.store.get_session(USER, "s1")).status is SessionStatus.ENDED


async def test_the_reflection_status_follows_the_instance_for_that_session_only(running_api: Api) -> None:
    ended = await finished_session(running_api, "s1")
    query = {"user_id": USER, "session_id": "s1"}
    reply = await running_api.get("reflection_status", query)
    assert reply.status == 200
    assert set(reply.body) == {"name", "instanceId", "runtimeStatus", "output", "createdTime", "lastUpdatedTime"}
    assert reply.body["instanceId"] == ended["id"] and reply.body["name"] == names.REFLECTION_ORCHESTRATOR
    assert reply.body["runtimeStatus"] == "Completed" and reply.body["output"]["summary"]
    # Another user naming the same session id gets that user's session, which has no reflection.
    other = await running_api.get("reflection_status", {"user_id": "mallory", "session_id": "s1"})
    assert other.status == 404 and other.body["field"] == "session_id"
    missing = await running_api.get("reflection_status", {"user_id": USER})
    assert missing.status == 400 and missing.body["field"] == "session_id"


async def test_a_running_reflection_is_202_and_a_failed_one_names_no_internals(
    api: Api, hub: TaskHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    await start(api, "s1", restore=False)
    await api.post("end_session", {"user_id": USER, "session_id": "s1"})
    query = {"user_id": USER, "session_id": "s1"}
    pending = await api.get("reflection_status", query)
    assert pending.status == 202 and pending.body["runtimeStatus"] == "Pending"
    # The durable worker picks the reflection up, and every attempt fails with internals in the message.
    fail_reflections(monkeypatch, ConnectionError("AccountKey=secret at /srv/app.py:12"), times=5)
    await hub.resume()
    await hub.settle()
    assert "AccountKey=secret" in (await hub.client.get_status(names.reflection_instance_id(USER, "s1"))).output
    failed = await api.get("reflection_status", query)
    assert failed.status == 200 and failed.body["runtimeStatus"] == "Failed"
    assert "secret" not in failed.text and "end the session again" in failed.body["output"]


async def test_no_answer_of_the_service_carries_a_durable_key_or_management_url(running_api: Api) -> None:
    # The task hub's management URLs carry its durable key (code=...), as the extension's carry the system key on Azure.
    answers = [await start(running_api, "s1", restore=False)]
    for n in range(1, 8):
        answers.append((await store(running_api, "s1", f"message {n}", turn_id=f"t{n}")).body)
    answers.append((await running_api.post("get_context", {"user_id": USER, "session_id": "s1"})).body)
    answers.append((await running_api.post("end_session", {"user_id": USER, "session_id": "s1"})).body)
    answers.append((await running_api.get("reflection_status", {"user_id": USER, "session_id": "s1"})).body)
    answers.append((await running_api.get("stats")).body)
    answers.append((await running_api.get("export_user", user_id=USER)).body)
    text = json.dumps(answers)
    assert "code=" not in text and "runtime/webhooks" not in text and "rpcBaseUrl" not in text


async def test_end_of_an_unknown_session_is_404(api: Api, hub: TaskHub) -> None:
    reply = await api.post("end_session", {"user_id": USER, "session_id": "nope"})
    assert (reply.status, reply.body) == (404, NOT_FOUND)
    assert hub.client.starts == []


async def test_ending_twice_returns_the_same_reflection_while_it_runs(api: Api, hub: TaskHub) -> None:
    await start(api, "s1", restore=False)
    first = await api.post("end_session", {"user_id": USER, "session_id": "s1"})
    second = await api.post("end_session", {"user_id": USER, "session_id": "s1"})
    assert first.status == second.status == 202
    assert first.body["id"] == second.body["id"]
    assert len(hub.client.starts) == 1


async def test_ending_twice_after_the_reflection_is_done_starts_nothing(
    running_api: Api, running_hub: TaskHub, service: MemoryService
) -> None:
    first = await finished_session(running_api, "s1")
    instance = (await running_hub.instances())[first["id"]]
    assert instance.runtime_status.value == "Completed"
    assert instance.output["summary"] and instance.output["insights_added"]
    final = await running_hub.entity_state(names.SESSION_ENTITY, entity_key("s1"))
    assert final["status"] == "ended" and final["cumulative_summary"] == "" and final["recent"] == []
    record = await service.store.get_session(USER, "s1")
    assert record is not None and record.status is SessionStatus.ENDED and record.reflected_at is not None

    second = await running_api.post("end_session", {"user_id": USER, "session_id": "s1"})
    assert second.status == 202 and second.body["id"] == first["id"]
    assert [s for s in running_hub.client.starts if s[0] == names.REFLECTION_ORCHESTRATOR] == [
        (names.REFLECTION_ORCHESTRATOR, first["id"], {"user_id": USER, "session_id": "s1"})
    ]


async def test_a_failed_reflection_is_started_again(
    running_api: Api, running_hub: TaskHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    await start(running_api, "s1", restore=False)
    fail_reflections(monkeypatch, RuntimeError("reflect failed (injected)"), times=5)  # every attempt of the first run
    first = await running_api.post("end_session", {"user_id": USER, "session_id": "s1"})
    assert (await running_hub.statuses())[first.body["id"]] == "Failed"
    second = await running_api.post("end_session", {"user_id": USER, "session_id": "s1"})
    assert second.body["id"] == first.body["id"]
    assert (await running_hub.statuses())[first.body["id"]] == "Completed"
    assert len(running_hub.client.starts) == 2


# -- /health ----------------------------------------------------------------------------------------------------


async def test_health_reports_what_the_service_runs_on(functions: dict[str, Any], service: MemoryService) -> None:
    reply = await Api(functions, None).get("health")
    assert reply.status == 200
    assert reply.body == {
        "status": "healthy",
        "store": "sqlite",
        "llm": service.chat.name,
        "embeddings": "none (full-text search only)",
    }


async def test_health_names_the_bad_setting_when_the_service_cannot_start(
    functions: dict[str, Any], settings_env: Any
) -> None:
    settings_env(K_TURN_BUFFER=0)
    reply = await Api(functions, None).get("health")
    assert reply.status == 503
    assert reply.body["error"] == "ServiceUnavailable"
    assert reply.body["detail"].startswith("Session pool not initialized: ")
    assert "K_TURN_BUFFER" in reply.body["detail"]
    assert reply.headers.get("Retry-After") == "1"


async def test_every_endpoint_is_503_when_the_service_cannot_start(
    functions: dict[str, Any], settings_env: Any, durable_settings: None, hub_dir: Path
) -> None:
    settings_env(STORE="cosmos")  # without COSMOS_ENDPOINT
    async with TaskHub.started(hub_dir, running=False) as hub:
        api = Api(functions, hub)
        for name, body in VALID.items():
            reply = await api.post(name, body)
            assert reply.status == 503, name
            assert "COSMOS_ENDPOINT" in reply.body["detail"]


# -- /stats -----------------------------------------------------------------------------------------------------


async def test_stats_of_an_empty_pool(api: Api) -> None:
    reply = await api.get("stats")
    assert reply.status == 200
    assert reply.body == {
        "total_sessions": 0,
        "dirty_sessions": 0,
        "max_capacity": 100,
        "utilization": 0.0,
        "ttl_seconds": 1800.0,
        "avg_age_seconds": 0.0,
        "oldest_age_seconds": 0.0,
    }


async def test_stats_count_the_hot_sessions_from_their_records(api: Api, service: MemoryService) -> None:
    await start(api, "s1", restore=False)
    await start(api, "s2", restore=False)
    await evicted_session(service, "cold", 2)  # idle: not in the hot pool
    old = datetime.now(UTC) - timedelta(minutes=10)
    behind = SessionRecord(
        user_id="bob", session_id="s3", status=SessionStatus.ACTIVE, started_at=old, last_activity=old, turn_count=4
    )
    await service.store.put_session(behind)  # four turns, none indexed: its batch (due at K+L=4) is missing
    reply = await api.get("stats")
    assert reply.status == 200
    body = reply.body
    assert set(body) == set(models.StatsResponse.model_fields)
    assert (body["total_sessions"], body["dirty_sessions"], body["max_capacity"]) == (3, 1, 100)
    assert body["utilization"] == 0.03 and body["ttl_seconds"] == 1800.0
    assert 599 <= body["oldest_age_seconds"] <= 660
    assert 199 <= body["avg_age_seconds"] <= 220


# -- /users/{user_id} and its export ----------------------------------------------------------------------------


async def test_forget_removes_everything_of_the_user_and_nothing_else(
    running_api: Api, running_hub: TaskHub, service: MemoryService
) -> None:
    await finished_session(running_api, "old")
    await start(running_api, "hot", restore=False)
    for n in range(1, 4):
        await store(running_api, "hot", f"I have {n} dogs.", turn_id=f"t{n}")
    await running_hub.pause()
    await store(running_api, "hot", "Still here.", turn_id="t4")  # makes a chunk due: its batch stays pending
    bob = Api(running_api.functions, running_hub)
    assert (await bob.post("start_session", {"user_id": "bob", "session_id": "b1", "restore": False})).status == 200
    for n in range(4):
        await bob.post("store_turn", {**VALID["store_turn"], "user_id": "bob", "session_id": "b1", "turn_id": f"b{n}"})
    instances = set(await running_hub.instances())
    alice_instances = {i for i in instances if i.startswith(names.user_prefix(USER))}
    bob_instances = instances - alice_instances
    assert len(alice_instances) == 2 and len(bob_instances) == 1
    alice_entities = {
        e for e in await running_hub.entities() if e.startswith(f"@session@{names.user_entity_prefix(USER)}")
    }
    assert alice_entities  # the ended session's final state

    # The durable worker takes work again once the forget has asked the pending batch to stop: it never runs.
    running_hub.client.on_terminate = running_hub.resume
    reply = await running_api.delete("forget_user", user_id=USER)
    assert reply.status == 200
    assert reply.body == {
        "user_id": USER,
        "sessions": 2,
        "turns": 7,
        "chunks": reply.body["chunks"],
        "summaries": 1,
        "insights": reply.body["insights"],
        "histories_purged": 2,
        "entities_deleted": len(alice_entities),
        "complete": True,
        "pending": {"instances": 0, "entities": 0},
        "began_at": reply.body["began_at"],
    }
    assert reply.body["insights"] >= 1
    assert set(await running_hub.instances()) == bob_instances
    assert not alice_entities & await running_hub.entities()
    assert [t for t, _ in running_hub.client.terminated] == [names.batch_instance_id(USER, "hot", 4)]
    assert await running_hub.entity_state(names.SESSION_ENTITY, entity_key("hot")) is None
    assert await running_hub.entity_state(names.SESSION_ENTITY, entity_key("old")) is None
    exported = await service.store.export_user(USER)
    assert exported.sessions == exported.turns == exported.insights == exported.summaries == []
    assert (await service.store.get_session("bob", "b1")) is not None
    assert (await store(running_api, "hot", "after forgetting")).status == 404


async def test_forget_of_an_unknown_user_removes_nothing(api: Api) -> None:
    reply = await api.delete("forget_user", user_id="nobody")
    assert reply.status == 200
    assert reply.body == {
        "user_id": "nobody",
        "sessions": 0,
        "turns": 0,
        "chunks": 0,
        "summaries": 0,
        "insights": 0,
        "histories_purged": 0,
        "entities_deleted": 0,
        "complete": True,
        "pending": {"instances": 0, "entities": 0},
        "began_at": reply.body["began_at"],
    }


async def test_export_returns_everything_stored_about_the_user(running_api: Api) -> None:
    await finished_session(running_api, "s1")
    reply = await running_api.get("export_user", user_id=USER)
    assert reply.status == 200
    body = reply.body
    assert body["user_id"] == USER
    assert [s["session_id"] for s in body["sessions"]] == ["s1"] and body["sessions"][0]["status"] == "ended"
    assert [t["user_message"] for t in body["turns"]] == FACTS
    assert len(body["summaries"]) == 1 and body["insights"]


@pytest.mark.parametrize("name", ["forget_user", "export_user"])
@pytest.mark.parametrize("user_id", ["  ", "a" * 257, "a/b", "a%2Fb", "a#b", "a?b", "a\\b", "50%"])
async def test_user_endpoints_refuse_a_bad_user_id_in_the_path(api: Api, name: str, user_id: str) -> None:
    send = api.delete if name == "forget_user" else api.get
    reply = await send(name, user_id=user_id)
    assert reply.status == 400
    assert reply.body["error"] == "ValidationError" and reply.body["field"] == "user_id"


@pytest.mark.parametrize("name", ["forget_user_by_query", "export_user_by_query"])
@pytest.mark.parametrize("query", [{}, {"user_id": " "}, {"user_id": "a" * 257}, {"user_id": "x\ny"}])
async def test_user_endpoints_refuse_a_bad_user_id_in_the_query(api: Api, name: str, query: dict[str, str]) -> None:
    send = api.delete if name == "forget_user_by_query" else api.get
    reply = await send(name, query)
    assert reply.status == 400
    assert reply.body["error"] == "ValidationError" and reply.body["field"] == "user_id"


async def test_the_function_key_parameter_is_no_input_of_a_query(api: Api) -> None:
    reply = await api.get("export_user_by_query", {"user_id": USER, "code": "the-function-key"})
    assert reply.status == 200 and reply.body["user_id"] == USER
    reply = await api.get("export_user_by_query", {"user_id": USER, "other": "x"})
    assert reply.status == 400 and reply.body["field"] == "other"


# -- /openapi.json ----------------------------------------------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


# Routes the OpenAPI document leaves out: itself, and the memory inspector's page and static files (not JSON).
NOT_JSON_ROUTES = {"openapi.json", "inspector", "inspector/assets/{name}"}


async def test_openapi_documents_every_route_of_the_app(functions: dict[str, Any]) -> None:
    reply = await Api(functions, None).get("openapi")
    assert reply.status == 200
    doc = reply.body
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref
    documented = {(path, method) for path, operations in doc["paths"].items() for method in operations}
    routes = set()
    for fn in functions.values():
        trigger = fn.get_trigger()
        if trigger.type != "httpTrigger" or trigger.route in NOT_JSON_ROUTES:
            continue
        (method,) = trigger.methods
        path, verb = "/" + trigger.route, method.value.lower()
        routes.add((path, verb))
        operation = doc["paths"][path][verb]
        anonymous = trigger.auth_level.name == "ANONYMOUS"
        assert (operation["security"] == []) is anonymous, path
        assert "200" in operation["responses"] or "202" in operation["responses"]
        if "{user_id}" in path:
            assert [p["name"] for p in operation["parameters"]] == ["user_id"]
    assert documented == routes


@pytest.mark.parametrize("name", sorted(REQUESTS))
async def test_openapi_request_schemas_are_the_validated_models(functions: dict[str, Any], name: str) -> None:
    doc = (await Api(functions, None).get("openapi")).body
    route = "/" + functions[name].get_trigger().route
    operation = doc["paths"][route]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    model = REQUESTS[name]
    expected = model.model_json_schema(mode="validation")
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(model.model_fields)
    assert set(schema.get("required", [])) == set(expected.get("required", []))
    assert operation["requestBody"]["required"] is True
    statuses = {"end_session": {"202"}, "store_turn": {"201", "200"}}.get(name, {"200"})
    assert statuses <= set(operation["responses"]) and "400" in operation["responses"]


@pytest.mark.parametrize("name", sorted(VALID))
async def test_a_body_the_schema_forbids_is_400(api: Api, name: str) -> None:
    reply = await api.post(name, {**VALID[name], "unexpected": 1})
    assert reply.status == 400
    assert reply.body["error"] == "ValidationError" and reply.body["field"] == "unexpected"


# -- bad input everywhere ---------------------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes, str | None]] = [
    # (label, body as sent, field the error names)
    ("not json", b"{not json", None),
    ("array", b"[1, 2]", None),
    ("empty", b"", None),
    ("blank", b"   ", None),
    ("string", b'"user_id"', None),
    ("number", b"42", None),
    ("invalid utf-8", b"\xff\xfe{", None),
]


@pytest.mark.parametrize("name", sorted(VALID))
@pytest.mark.parametrize(("label", "raw", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_a_body_that_is_not_a_json_object_is_400(
    api: Api, name: str, label: str, raw: bytes, field: str | None
) -> None:
    reply = await api.post(name, raw=raw)
    assert reply.status == 400, reply.body
    assert reply.body["error"] == "InvalidRequestError"
    assert reply.body["detail"] in ("Body must be JSON", "Body must be a JSON object")
    assert reply.body["field"] == field


@pytest.mark.parametrize("name", sorted(VALID))
async def test_a_missing_field_is_400_naming_it(api: Api, name: str) -> None:
    for missing in VALID[name]:
        body = {k: v for k, v in VALID[name].items() if k != missing}
        reply = await api.post(name, body)
        assert reply.status == 400, (missing, reply.body)
        assert reply.body["error"] == "ValidationError" and reply.body["field"] == missing


@pytest.mark.parametrize("name", sorted(VALID))
@pytest.mark.parametrize("bad_id", ["", "   ", "a" * 257, "x\ny", "tab\t", "nul\x00", "\u3000", 7, None, True])
async def test_a_bad_id_is_400_naming_the_field(api: Api, name: str, bad_id: Any) -> None:
    for field in [k for k in VALID[name] if k.endswith("_id")]:
        reply = await api.post(name, {**VALID[name], field: bad_id})
        assert reply.status == 400, (field, reply.body)
        assert reply.body["field"] == field


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("store_turn", {"user_message": "x" * 32_001}, "user_message"),
        ("store_turn", {"agent_message": "   "}, "agent_message"),
        ("store_turn", {"user_message": ""}, "user_message"),
        ("store_turn", {"metadata": {"blob": "x" * 5000}}, "metadata"),
        ("store_turn", {"metadata": ["not", "an", "object"]}, "metadata"),
        ("store_turn", {"timestamp": "2026-05-01T09:00:00"}, "timestamp"),
        ("store_turn", {"timestamp": "yesterday"}, "timestamp"),
        ("store_turn", {"turn_id": "bad\nid"}, "turn_id"),
        ("store_turn", {"metadata": {"score": float("nan")}}, "metadata"),
        ("store_turn", {"metadata": {"deep": [{"score": float("inf")}]}}, "metadata"),
        ("store_turn", {"metadata": {"id": 2**53}}, "metadata"),
        ("store_turn", {"timestamp": 1714550400}, "timestamp"),
        ("store_turn", {"timestamp": "0999-12-31T23:59:59Z"}, "timestamp"),
        ("get_context", {"after_turn_id": "bad\nid"}, "after_turn_id"),
        ("start_session", {"restore": "perhaps"}, "restore"),
        ("start_session", {"restore": 0}, "restore"),
        ("insights", {"include_superseded": 0}, "include_superseded"),
        ("insights", {"recent_only": 1}, "recent_only"),
        ("retrieve", {"top_k": 51}, "top_k"),
        ("retrieve", {"top_k": 0}, "top_k"),
        ("retrieve", {"top_k": "many"}, "top_k"),
        ("retrieve", {"top_k": 5.5}, "top_k"),
        ("retrieve", {"top_k": True}, "top_k"),
        ("retrieve", {"top_k": float("nan")}, "top_k"),
        ("retrieve", {"top_k": float("inf")}, "top_k"),
        ("summaries", {"limit": 1e999}, "limit"),
        ("retrieve", {"query": "q" * 2001}, "query"),
        ("retrieve", {"query": " "}, "query"),
        ("retrieve", {"max_tokens": 0}, "max_tokens"),
        ("retrieve", {"max_tokens": 100_001}, "max_tokens"),
        ("retrieve", {"kinds": []}, "kinds"),
        ("retrieve", {"kinds": ["memory"]}, "kinds.0"),
        ("retrieve", {"session_ids": ["s1"] * 101}, "session_ids"),
        ("retrieve", {"session_ids": ["bad\nid"]}, "session_ids.0"),
        ("retrieve", {"since": "yesterday"}, "since"),
        ("retrieve", {"as_of": "2026-05-01T00:00:00"}, "as_of"),
        ("insights", {"limit": 101}, "limit"),
        ("summaries", {"limit": 0}, "limit"),
        ("summaries", {"user_id": 7}, "user_id"),
    ],
)
async def test_an_out_of_bounds_value_is_400_naming_the_field(
    api: Api, name: str, change: dict[str, Any], field: str
) -> None:
    reply = await api.post(name, {**VALID[name], **change})
    assert reply.status == 400, reply.body
    assert reply.body["error"] == "ValidationError" and reply.body["field"] == field
    assert field in reply.body["detail"]


async def test_a_body_nested_too_deep_for_the_decoder_is_400(api: Api) -> None:
    reply = await api.post("insights", raw=b"[" * 5000 + b"]" * 5000)
    assert reply.status == 400 and reply.body["detail"] == "Body must be JSON"


@pytest.mark.parametrize("depth", [33, 300, 900])
async def test_metadata_nested_too_deep_is_400(api: Api, depth: int) -> None:
    await start(api, "s1", restore=False)
    nested = b"[" * (depth - 1) + b"]" * (depth - 1)
    raw = json.dumps(VALID["store_turn"]).encode()[:-1] + b', "metadata": {"a": ' + nested + b"}}"
    reply = await api.post("store_turn", raw=raw)
    assert reply.status == 400, reply.body
    assert reply.body["field"] == "metadata" and "32 levels" in reply.body["detail"]


async def test_metadata_nested_32_levels_is_accepted(running_api: Api) -> None:
    await start(running_api, "s1", restore=False)
    nested: Any = []
    for _ in range(30):
        nested = [nested]
    reply = await store(running_api, "s1", "deep", metadata={"a": nested})
    assert reply.status == 201, reply.body
    context = await running_api.post("get_context", VALID["get_context"])
    assert context.status == 200 and context.body["turn_count"] == 1


async def test_a_body_over_a_megabyte_is_400(api: Api) -> None:
    reply = await api.post("store_turn", raw=b" " * 1_048_577)
    assert reply.status == 400 and "1048576 bytes" in reply.body["detail"]


async def test_limits_follow_the_settings(
    functions: dict[str, Any], settings_env: Any, durable_settings: None, hub_dir: Path
) -> None:
    settings_env(MAX_TOP_K=3)
    try:
        async with TaskHub.started(hub_dir, running=False) as hub:
            api = Api(functions, hub)
            assert (await api.post("retrieve", {**VALID["retrieve"], "top_k": 3})).status == 200
            reply = await api.post("retrieve", {**VALID["retrieve"], "top_k": 4})
            assert reply.status == 400 and reply.body["detail"] == "top_k: must be at most 3"
    finally:
        await close_service()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(VALID)),
    body=st.one_of(JSON, st.fixed_dictionaries({}, optional={k: JSON for k in VALID["store_turn"]})),
)
async def test_no_body_gives_a_server_error(api: Api, name: str, body: Any) -> None:
    reply = await api.post(name, body)
    assert reply.status < 500, (name, body, reply.body)
    if reply.status >= 400:
        assert set(reply.body) == {"error", "detail", "field"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(min_size=1, max_size=60), top_k=st.integers(min_value=-2, max_value=60))
async def test_no_query_gives_a_server_error(running_api: Api, query: str, top_k: int) -> None:
    assert running_api.hub is not None
    if not await running_api.hub.instances():
        await finished_session(running_api)
    reply = await running_api.post("retrieve", {"user_id": USER, "query": query, "top_k": top_k})
    assert reply.status in (200, 400), (query, reply.body)
    if reply.status == 200:
        assert reply.body["count"] == len(reply.body["facts"]) <= top_k


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    user_message=st.text(min_size=1, max_size=80),
    metadata=st.dictionaries(st.text(max_size=10), JSON, max_size=4),
)
async def test_any_stored_turn_is_in_the_context_and_its_background_work_completes(
    running_api: Api, running_hub: TaskHub, user_message: str, metadata: dict[str, Any]
) -> None:
    await running_api.post("start_session", {"user_id": USER, "session_id": "s1"})
    reply = await store(running_api, "s1", user_message, metadata=metadata)
    assert reply.status in (201, 400), reply.body
    if reply.status == 201:
        context = await running_api.post("get_context", VALID["get_context"])
        assert context.status == 200 and context.body["active_context"][-2]["content"] == user_message
        assert set((await running_hub.statuses()).values()) <= {"Completed"}


# -- unexpected failures ----------------------------------------------------------------------------------------


async def test_an_unexpected_error_in_a_use_case_is_a_generic_500(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("password=hunter2 in /srv/secret.db")

    monkeypatch.setattr(use_cases, "stats", broken)
    reply = await api.get("stats")
    assert reply.status == 500
    assert reply.body == {
        "error": "InternalError",
        "detail": "The service failed to handle the request; see its logs",
        "field": None,
    }
    assert "hunter2" not in reply.text and "RuntimeError" not in reply.text
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)  # logged, not returned


async def test_an_unexpected_error_in_the_service_is_a_generic_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: MemoryService, request: Any) -> Any:
        raise KeyError("internal-key-name")

    monkeypatch.setattr(MemoryService, "insights", broken)
    reply = await api.post("insights", VALID["insights"])
    assert reply.status == 500 and "internal-key-name" not in reply.text


async def test_a_failing_durable_client_is_a_generic_500(api: Api, hub: TaskHub) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("http://127.0.0.1:17071/durabletask/ refused")

    await start(api, "s1", restore=False)
    hub.client.get_status = broken  # type: ignore[method-assign]
    reply = await api.post("end_session", {"user_id": USER, "session_id": "s1"})
    assert reply.status == 500 and "17071" not in reply.text


async def test_entity_state_and_every_durable_payload_stay_small_with_32000_character_messages(
    functions: dict[str, Any], settings_env: Any, durable_settings: None, hub_dir: Path
) -> None:
    settings_env(K_TURN_BUFFER=5, L_TURN_CHUNKS=2, MAX_MESSAGE_CHARS=32_000)
    try:
        async with TaskHub.started(hub_dir, running=True) as hub:
            api = Api(functions, hub)
            await start(api, "big", restore=False)
            for n in range(1, 10):  # batches at turns 7 and 9; five recent turns of 2 x 32,000 characters each
                body = {
                    "user_id": USER,
                    "session_id": "big",
                    "user_message": "é" * 32_000,
                    "agent_message": "ü" * 32_000,
                }
                assert (await api.post("store_turn", {**body, "turn_id": f"t{n}"})).status == 201
            instances = await hub.statuses()
            assert set(instances.values()) == {"Completed"}
            state = await hub.entity_state(names.SESSION_ENTITY, entity_key("big"))
            assert state["turn_count"] == 9 and len(state["recent"]) == 5
            assert len(json.dumps(state)) < 32 * 1024
            # inputs, activity inputs, entity operations' inputs and results, outputs: as the histories hold them
            payloads = [payload for instance_id in instances for payload in hub.payloads(instance_id)]
            assert max(len(json.dumps(p)) for p in payloads) < 8 * 1024
    finally:
        await close_service()
