"""MemoryServiceClient against the real service over HTTP: every method, typed errors, read-your-writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from memory_client import (
    Conflict,
    InvalidRequest,
    MemoryServiceClient,
    MemoryServiceError,
    NotFound,
    SessionEnded,
    SessionNotFound,
)
from tests.client.conftest import FAST, unique
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e

# Insights from 3 turns on, so a short session shows the whole reflection.
SERVICE_SETTINGS = {"REFLECTION_THRESHOLD_TURNS": "3"}

CONTEXT_KEYS = {
    "session_id",
    "user_id",
    "active_context",
    "cumulative_summary",
    "insights",
    "session_summaries",
    "formatted_context",
    "restored",
    "turn_count",
}


async def stored_turns(client: MemoryServiceClient, session_id: str, count: int) -> list[dict[str, Any]]:
    """The session's turns in the store (seq order), once ``count`` of them are there (they are written async)."""
    for _ in range(200):
        exported = await client.export_user()
        turns = sorted((t for t in exported["turns"] if t["session_id"] == session_id), key=lambda t: t["seq"])
        if len(turns) >= count:
            return turns
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} turns not stored; got {turns}")


async def test_every_method_of_the_guides_pattern_2(service: MemoryServiceProcess, user: str) -> None:
    async with MemoryServiceClient(service.base_url, user, **FAST) as client:
        assert (await client.health())["status"] == "healthy"

        context = await client.start_session()
        assert set(context) == CONTEXT_KEYS
        session_id = context["session_id"]
        assert client.session_id == session_id and context["user_id"] == user
        assert context["turn_count"] == 0 and "No memory about this user yet" in context["formatted_context"]

        first = await client.store_turn("I live in Lisbon.", "Lisbon is a beautiful city.")
        assert first["status"] == "stored" and first["session_id"] == session_id
        assert len(first["turn_id"]) == 32  # generated: uuid4 hex
        stamp = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
        second = await client.store_turn(
            "I am vegetarian.", "Noted.", turn_id="my-turn-2", timestamp=stamp, metadata={"channel": "test"}
        )
        assert second == {
            "status": "stored",
            "user_id": user,
            "session_id": session_id,
            "turn_id": "my-turn-2",
            "seq": 2,
            "duplicate": False,
        }
        assert client.last_turn_id == "my-turn-2"
        await client.store_turn("I prefer green tea over coffee.", "Green tea it is.")

        context = await client.get_context()
        assert context["turn_count"] == 3
        assert {"role": "user", "content": "I am vegetarian."} in context["active_context"]
        assert "I prefer green tea over coffee." in context["formatted_context"]

        found = await client.retrieve("Where does the user live? Lisbon", top_k=3)
        assert found["count"] >= 1 and any("Lisbon" in fact for fact in found["facts"])
        assert found["items"][0]["kind"] in {"turn", "chunk", "summary", "insight"}
        budgeted = await client.retrieve("Lisbon tea", max_tokens=40, kinds=["turn"], session_ids=[session_id])
        assert 1 <= budgeted["count"] and budgeted["tokens"] <= 40
        assert {item["kind"] for item in budgeted["items"]} == {"turn"}
        later = await client.retrieve("Lisbon", since=datetime.now(UTC) + timedelta(days=1))
        assert later["count"] == 0

        assert (await client.get_insights())["count"] == 0
        assert (await client.get_summaries())["count"] == 0

        handle = await client.end_session()
        assert handle["session_id"] == session_id and handle["status"] == "reflecting" and handle["id"]
        assert handle.get("statusQueryGetUri")
        assert client.session_id is None  # the current session ended

        status = await client.wait_for_reflection(handle, timeout=30)
        assert status["runtimeStatus"] == "Completed"
        output = status["output"]
        assert output["session_id"] == session_id and output["turn_count"] == 3 and output["summary"]
        assert output["insights_added"]

        insights = await client.get_insights()
        assert "The user lives in Lisbon." in insights["insights"]
        assert {item["id"] for item in insights["items"]} >= set(output["insights_added"])
        summaries = await client.get_summaries(limit=5)
        assert summaries["count"] == 1 and summaries["items"][0]["session_id"] == session_id

        turns = await stored_turns(client, session_id, 3)
        assert [t["seq"] for t in turns] == [1, 2, 3]
        assert turns[1]["turn_id"] == "my-turn-2" and turns[1]["metadata"] == {"channel": "test"}
        assert turns[1]["timestamp"].startswith("2025-01-02T03:04:05")

        # a new session starts with what reflection learned
        context = await client.start_session()
        assert "The user lives in Lisbon." in context["formatted_context"]
        await client.wait_for_reflection(await client.end_session())  # nothing of the user is still being written

        forgotten = await client.forget_user()
        assert forgotten["user_id"] == user and forgotten["turns"] == 3 and forgotten["sessions"] == 2
        exported = await client.export_user()
        assert exported["sessions"] == [] and exported["turns"] == [] and exported["insights"] == []


async def test_read_your_writes_every_turn_is_in_the_next_context(service: MemoryServiceProcess, user: str) -> None:
    async with MemoryServiceClient(service.base_url, user, **FAST) as client:
        await client.start_session()
        for number in range(1, 9):
            stored = await client.store_turn(f"Message number {number}", f"Reply number {number}")
            context = await client.get_context()  # sends after_turn_id = the turn just stored
            assert context["turn_count"] == number
            assert context["active_context"][-1] == {"role": "assistant", "content": f"Reply number {number}"}
            assert client.last_turn_id == stored["turn_id"]


async def test_continue_a_session_by_id_with_a_second_client(service: MemoryServiceProcess, user: str) -> None:
    async with MemoryServiceClient(service.base_url, user, **FAST) as first:
        session_id = (await first.start_session())["session_id"]
        await first.store_turn("I have a cat named Miso.", "Miso is a lovely name.")
        async with MemoryServiceClient(service.base_url, user, session_id=session_id, **FAST) as second:
            # a new client does not know the first one's turn id: it asks for it explicitly
            context = await second.get_context(after_turn_id=first.last_turn_id)
            assert context["turn_count"] == 1
            restarted = await second.start_session(session_id)  # restore (the default): the same session
            assert restarted["session_id"] == session_id and restarted["turn_count"] == 1


async def test_the_same_turn_id_is_stored_once(service: MemoryServiceProcess, user: str) -> None:
    async with MemoryServiceClient(service.base_url, user, **FAST) as client:
        session_id = (await client.start_session())["session_id"]
        for _ in range(3):
            await client.store_turn("Say it once.", "Once.", turn_id="only-once")
        assert (await client.get_context())["turn_count"] == 1
        turns = await stored_turns(client, session_id, 1)
        assert [t["turn_id"] for t in turns] == ["only-once"]


def assert_service_error(error: MemoryServiceError, status: int, kind: str, field: str | None) -> None:
    assert error.status == status
    assert error.error == kind
    assert error.field == field
    assert error.detail
    assert isinstance(error.body, dict) and set(error.body) == {"error", "detail", "field"}


async def test_errors_raise_typed_exceptions_with_the_services_json(service: MemoryServiceProcess, user: str) -> None:
    # degrade=True (the default) still raises: only an unreachable service degrades
    async with MemoryServiceClient(service.base_url, user, **FAST) as client:
        with pytest.raises(SessionNotFound) as not_found:
            await client.get_context("no-such-session")
        assert_service_error(not_found.value, 404, "SessionNotFoundError", "session_id")
        assert not_found.value.detail == "Session not found"
        assert isinstance(not_found.value, NotFound)

        with pytest.raises(SessionNotFound):
            await client.store_turn("hello", "hi", session_id="no-such-session")

        session_id = (await client.start_session())["session_id"]
        with pytest.raises(Conflict) as taken:
            await client.start_session(session_id, restore=False)
        assert_service_error(taken.value, 409, "ConflictError", "session_id")
        assert not isinstance(taken.value, SessionEnded)

        with pytest.raises(InvalidRequest) as invalid:
            await client.retrieve("anything", top_k=1000)
        assert_service_error(invalid.value, 400, "ValidationError", "top_k")
        assert "at most" in invalid.value.detail

        await client.store_turn("One turn.", "One reply.")
        await client.end_session(session_id)
        with pytest.raises(SessionEnded) as ended:
            await client.store_turn("Too late.", "Indeed.", session_id=session_id)
        assert_service_error(ended.value, 409, "SessionEndedError", "session_id")
        assert isinstance(ended.value, Conflict)
        assert client.pending_turns == 0  # refused turns are not buffered

    async with MemoryServiceClient(service.base_url, "not\ta valid id", **FAST) as bad_user:
        with pytest.raises(InvalidRequest) as bad_id:
            await bad_user.start_session()
        assert_service_error(bad_id.value, 400, "ValidationError", "user_id")

    async with MemoryServiceClient(service.base_url, unique(), **FAST) as client:
        await client.start_session()
        with pytest.raises(InvalidRequest) as blank:  # checked before sending: a blank turn is never buffered
            await client.store_turn("   ", "reply")
        assert blank.value.field == "user_message"
    async with MemoryServiceClient(service.base_url, unique(), **FAST) as client:
        with pytest.raises(RuntimeError, match="start_session"):
            await client.get_context()
