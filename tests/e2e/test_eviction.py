"""Idle sessions leave the hot pool through the cleanup timer, lose nothing, and come back (cold restore).

A service of its own with a TTL of about 1.2 s and a cleanup timer firing every second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.e2e.helpers import (
    assert_exactly_once,
    context,
    eventually,
    export,
    session_record,
    session_turns,
    start,
    stats,
    store,
    unique,
)
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e

K, L = 5, 10
SHORT_TTL = {
    "SESSION_TTL_MINUTES": "0.02",  # 1.2 s
    "EVICTION_INTERVAL_SECONDS": "1",
    "CLEANUP_SCHEDULE": "*/1 * * * * *",  # every second
    "K_TURN_BUFFER": str(K),
    "L_TURN_CHUNKS": str(L),
}


@pytest.fixture(scope="module")
def ttl_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryServiceProcess]:
    with MemoryServiceProcess(tmp_path_factory.mktemp("e2e-ttl"), SHORT_TTL) as service:
        yield service


@pytest.fixture
async def http(ttl_service: MemoryServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ttl_service.base_url, timeout=30) as client:
        yield client


def said(n: int) -> tuple[str, str]:
    return f"Fact number {n}: I collect vinyl record {n}.", f"Nice, record {n} is a classic."


async def session_with_turns(http: httpx.AsyncClient, user: str, turns: int) -> str:
    """A started session holding ``turns`` turns (t1..tN), all in, and its first chunk compacted if due."""
    session_id = (await start(http, user))["session_id"]
    for n in range(1, turns + 1):
        response = await store(http, user, session_id, f"t{n}", *said(n))
        assert response.status_code == 201, response.text
    ctx = await context(http, user, session_id)
    assert ctx["turn_count"] == turns
    return session_id


async def evicted(http: httpx.AsyncClient, user: str, session_id: str) -> dict:
    """Wait until the timer has evicted the session: its store record is idle. Returns the user's export."""

    async def check():
        exported = await export(http, user)
        return exported if session_record(exported, session_id)["status"] == "idle" else None

    return await eventually(check, within=15, interval=0.2)


def expected_recent(last: int) -> list[dict[str, str]]:
    messages = []
    for n in range(last - K + 1, last + 1):
        user_message, agent_message = said(n)
        messages += [{"role": "user", "content": user_message}, {"role": "assistant", "content": agent_message}]
    return messages


async def test_an_idle_session_is_evicted_loses_nothing_and_is_restored_cold(http: httpx.AsyncClient):
    user = unique("idle")
    turns = 17  # turns 1-10 compacted into a chunk, 11-12 pending, 13-17 recent
    session_id = await session_with_turns(http, user, turns)
    hot = await stats(http)
    assert hot["total_sessions"] >= 1 and hot["ttl_seconds"] == pytest.approx(1.2)

    exported = await evicted(http, user, session_id)

    async def pool_empty():
        return (await stats(http))["total_sessions"] == 0

    await eventually(pool_empty, within=10)
    # Nothing lost: every turn in the store once, the record restorable with what compaction made.
    assert_exactly_once(session_turns(exported, session_id), {f"t{n}" for n in range(1, turns + 1)})
    record = session_record(exported, session_id)
    assert record["turn_count"] == turns and record["indexed_through"] == turns  # eviction indexed the last turns
    assert record["compacted_through"] == L and record["cumulative_summary"]

    # The guide's cold restore: start with restore=true brings it back with its recent turns.
    restored = await start(http, user, session_id=session_id, restore=True)
    assert restored["restored"] is True
    assert restored["session_id"] == session_id and restored["turn_count"] == turns
    assert restored["active_context"] == expected_recent(turns)
    assert restored["cumulative_summary"] == record["cumulative_summary"]
    assert said(turns)[0] in restored["formatted_context"]
    assert session_record(await export(http, user), session_id)["status"] == "active"

    # Hot again: the next request is not a restore, and the session takes turns where it left off.
    assert (await context(http, user, session_id))["restored"] is False
    assert (await store(http, user, session_id, f"t{turns + 1}", *said(turns + 1))).status_code == 201
    ctx = await context(http, user, session_id)
    assert ctx["turn_count"] == turns + 1 and ctx["active_context"] == expected_recent(turns + 1)
    found = session_turns(await export(http, user), session_id)
    assert_exactly_once(found, {f"t{n}" for n in range(1, turns + 2)})


async def test_a_turn_for_an_evicted_session_brings_it_back(http: httpx.AsyncClient):
    user = unique("returning")
    session_id = await session_with_turns(http, user, 3)
    await evicted(http, user, session_id)

    assert (await store(http, user, session_id, "t4", *said(4))).status_code == 201
    ctx = await context(http, user, session_id)
    assert ctx["turn_count"] == 4 and ctx["restored"] is False  # the turn made it hot again
    assert [m["content"] for m in ctx["active_context"] if m["role"] == "user"] == [said(n)[0] for n in range(1, 5)]
    assert session_record(await export(http, user), session_id)["status"] == "active"
    assert_exactly_once(session_turns(await export(http, user), session_id), {"t1", "t2", "t3", "t4"})


async def test_a_retried_turn_after_eviction_is_stored_once(http: httpx.AsyncClient):
    # A client retries turns whose answer it never saw, after the session was evicted: one that was already
    # compacted (t1) and one that was not (t15). Neither may be stored again.
    user = unique("retry")
    turns = L + K  # turns 1-10 compacted, 11-15 recent
    session_id = await session_with_turns(http, user, turns)

    async def compacted():
        return (await context(http, user, session_id))["cumulative_summary"]

    await eventually(compacted, within=10)
    await evicted(http, user, session_id)

    for turn_id, n in (("t1", 1), (f"t{turns}", turns)):
        repeat = await store(http, user, session_id, turn_id, *said(n))
        assert repeat.status_code == 200 and repeat.json()["seq"] == n
    assert (await store(http, user, session_id, f"t{turns + 1}", *said(turns + 1))).status_code == 201
    ctx = await context(http, user, session_id)
    assert ctx["turn_count"] == turns + 1, "a retried turn was appended again after the eviction"
    found = session_turns(await export(http, user), session_id)
    assert_exactly_once(found, {f"t{n}" for n in range(1, turns + 2)})
