"""Graceful degradation: with the service down the agent keeps working; buffered turns reach it once it is back.

The module's service is stopped and started again (same port, same store) inside the tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from memory_client import MemoryServiceClient, ServiceUnavailable, empty_context
from tests.client.conftest import FAST
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e

SERVICE_SETTINGS = {"REFLECTION_THRESHOLD_TURNS": "3"}


@contextmanager
def service_down(service: MemoryServiceProcess) -> Iterator[None]:
    """The service stopped (connections refused) inside the block, running again after it."""
    service.stop()
    try:
        yield
    finally:
        service.start()


async def stored_turn_ids(client: MemoryServiceClient, session_id: str, count: int) -> list[str]:
    """The session's stored turn ids in seq order, once ``count`` are stored; asserts seqs are 1..N."""
    turns: list[dict[str, Any]] = []
    for _ in range(200):
        exported = await client.export_user()
        turns = sorted((t for t in exported["turns"] if t["session_id"] == session_id), key=lambda t: t["seq"])
        if len(turns) >= count:
            break
        await asyncio.sleep(0.05)
    assert [t["seq"] for t in turns] == list(range(1, len(turns) + 1))
    return [t["turn_id"] for t in turns]


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real transport, counting the requests it is asked to send."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await super().handle_async_request(request)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "memory_client" and r.levelno == logging.WARNING]


async def test_unreachable_service_the_agent_keeps_working(
    closed_url: str, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="memory_client")
    transport = CountingTransport()
    async with MemoryServiceClient(closed_url, user, transport=transport, **FAST) as client:
        context = await client.start_session()
        session_id = context["session_id"]
        assert context == empty_context(user, session_id)  # the service's keys, nothing in them
        assert client.degraded and client.session_id == session_id
        assert any("Memory service unavailable" in m for m in warnings_of(caplog))

        stored = await client.store_turn("Hello", "Hi there")
        assert stored["status"] == "buffered" and client.pending_turns == 1

        sent = transport.requests
        context = await client.get_context()
        assert context == empty_context(user, session_id)
        found = await client.retrieve("hello")
        assert found == {"query": "hello", "facts": [], "count": 0, "items": [], "tokens": 0}
        assert (await client.get_insights())["insights"] == []
        assert (await client.get_summaries())["summaries"] == []
        # while degraded a call makes one attempt (plus one to send the buffered turn), not max_attempts of them
        assert transport.requests - sent <= 2 * 4 < 4 * client.max_attempts

        with pytest.raises(ServiceUnavailable, match="still buffered"):
            await client.end_session()  # ending would refuse the buffered turn: not done, the turn is kept
        assert client.pending_turns == 1

    # closing tries once more and says what is lost
    assert any("not sent to the memory service; they are lost" in m for m in warnings_of(caplog))


async def test_buffered_turns_are_flushed_in_order_when_the_service_is_back(
    service: MemoryServiceProcess, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="memory_client")
    async with MemoryServiceClient(service.base_url, user, buffer_size=4, **FAST) as client:
        session_id = (await client.start_session())["session_id"]
        assert (await client.store_turn("Turn 1", "Reply 1", turn_id="t1"))["status"] == "stored"

        with service_down(service):
            for number in range(2, 8):
                stored = await client.store_turn(f"Turn {number}", f"Reply {number}", turn_id=f"t{number}")
                assert stored["status"] == "buffered"
            # bounded: 4 kept, the 2 oldest dropped with a warning each
            assert [t.turn_id for t in client.buffered_turns] == ["t4", "t5", "t6", "t7"]
            assert client.dropped_turns == 2
            dropped = [m for m in warnings_of(caplog) if "dropped the oldest turn" in m]
            assert len(dropped) == 2 and "t2" in dropped[0] and "t3" in dropped[1]
            assert (await client.get_context()) == empty_context(user, session_id)

        # the next call that reaches the service sends the buffer first, then reads its own writes
        context = await client.get_context()
        assert client.pending_turns == 0 and not client.degraded
        assert context["turn_count"] == 5
        assert context["active_context"][-1] == {"role": "assistant", "content": "Reply 7"}
        assert await stored_turn_ids(client, session_id, 5) == ["t1", "t4", "t5", "t6", "t7"]


class LosingAnswers(httpx.AsyncBaseTransport):
    """Forwards every request to the service, but loses the answer to the first ``lose`` stores (as a timeout)."""

    def __init__(self, lose: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lose = lose
        self.stores: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == "/memory/store":
            self.stores.append(request.content)
            if self.lose > 0:
                self.lose -= 1
                await response.aclose()
                raise httpx.ReadTimeout("answer lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_turns_resent_after_a_lost_answer_are_not_doubled(service: MemoryServiceProcess, user: str) -> None:
    transport = LosingAnswers(lose=3)
    # one attempt per call: each lost answer sends the turn to the buffer although the service has it
    async with MemoryServiceClient(service.base_url, user, max_attempts=1, transport=transport) as client:
        session_id = (await client.start_session())["session_id"]
        for number in (1, 2, 3):
            assert (await client.store_turn(f"Turn {number}", "ok", turn_id=f"t{number}"))["status"] == "buffered"
        assert client.pending_turns == 3
        assert await client.flush() == 3
        assert (await client.store_turn("Turn 4", "ok", turn_id="t4"))["status"] == "stored"
        assert (await client.get_context())["turn_count"] == 4
        assert await stored_turn_ids(client, session_id, 4) == ["t1", "t2", "t3", "t4"]
    assert len(transport.stores) == 7  # t1-t3 twice each, t4 once


async def test_a_session_started_while_down_is_created_when_the_service_is_back(
    service: MemoryServiceProcess, user: str
) -> None:
    async with MemoryServiceClient(service.base_url, user, **FAST) as client:
        with service_down(service):
            session_id = (await client.start_session())["session_id"]
            await client.store_turn("I live in Oslo.", "Oslo is lovely.", turn_id="a")
            await client.store_turn("I am a pilot.", "Exciting job.", turn_id="b")
            await client.store_turn("I prefer tea.", "Tea it is.", turn_id="c")
            assert client.pending_turns == 3
        assert await client.flush() == 3  # starts the session under its id, then sends the turns
        context = await client.get_context()
        assert context["session_id"] == session_id and context["turn_count"] == 3
        handle = await client.end_session()
        status = await client.wait_for_reflection(handle, timeout=30)
        assert status["runtimeStatus"] == "Completed" and status["output"]["turn_count"] == 3
        assert "The user lives in Oslo." in (await client.get_insights())["insights"]
