"""What the end-to-end tests share: unique ids, polling, and small wrappers over the service's HTTP API."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.support.service import MemoryServiceProcess

TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}
STATS_FIELDS = {
    "total_sessions",
    "dirty_sessions",
    "max_capacity",
    "utilization",
    "ttl_seconds",
    "avg_age_seconds",
    "oldest_age_seconds",
}

_counter = itertools.count(1)


def background_wait(service: MemoryServiceProcess, hops: int) -> float:
    """Seconds to allow for background work of ``hops`` Durable hops on ``service``, with room for a busy machine."""
    return 15.0 + hops * 1.5 * service.durable_latency_ms / 1000


def unique(prefix: str) -> str:
    """An id no other test uses."""
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 15.0, interval: float = 0.1) -> Any:
    """Await ``check()`` until it returns something truthy; fail with the last value after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {last!r}")
        await asyncio.sleep(interval)


async def start(client: httpx.AsyncClient, user_id: str, **extra: Any) -> dict[str, Any]:
    """POST /sessions/start; asserts 200."""
    response = await client.post("/sessions/start", json={"user_id": user_id, **extra})
    assert response.status_code == 200, response.text
    return response.json()


async def store(
    client: httpx.AsyncClient,
    user_id: str,
    session_id: str,
    turn_id: str,
    user_message: str,
    agent_message: str,
    **extra: Any,
) -> httpx.Response:
    """POST /memory/store (the caller checks the status)."""
    return await client.post(
        "/memory/store",
        json={
            "user_id": user_id,
            "session_id": session_id,
            "turn_id": turn_id,
            "user_message": user_message,
            "agent_message": agent_message,
            **extra,
        },
    )


async def context(client: httpx.AsyncClient, user_id: str, session_id: str, **extra: Any) -> dict[str, Any]:
    """POST /memory/context; asserts 200."""
    response = await client.post("/memory/context", json={"user_id": user_id, "session_id": session_id, **extra})
    assert response.status_code == 200, response.text
    return response.json()


async def export(client: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    """GET /users/{user_id}/export; asserts 200."""
    response = await client.get(f"/users/{user_id}/export")
    assert response.status_code == 200, response.text
    return response.json()


def session_turns(exported: dict[str, Any], session_id: str) -> list[dict[str, Any]]:
    """The exported turns of one session, in seq order."""
    return sorted((t for t in exported["turns"] if t["session_id"] == session_id), key=lambda t: t["seq"])


def session_record(exported: dict[str, Any], session_id: str) -> dict[str, Any]:
    """The exported store record of one session."""
    (record,) = [s for s in exported["sessions"] if s["session_id"] == session_id]
    return record


def assert_exactly_once(turns: list[dict[str, Any]], expected_ids: set[str] | None = None) -> None:
    """Every turn id once, sequence numbers 1..N with no gap, and (if given) exactly the expected turn ids."""
    ids = [t["turn_id"] for t in turns]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicated, f"turn ids stored more than once: {duplicated}"
    seqs = [t["seq"] for t in turns]
    assert seqs == list(range(1, len(turns) + 1)), f"sequence numbers are not 1..{len(turns)}: {seqs}"
    if expected_ids is not None:
        assert set(ids) == expected_ids, {
            "missing": sorted(expected_ids - set(ids)),
            "unexpected": sorted(set(ids) - expected_ids),
        }


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    """GET /stats; asserts 200 and the guide's seven fields."""
    response = await client.get("/stats")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == STATS_FIELDS
    return body


async def follow(client: httpx.AsyncClient, status_uri: str, within: float = 20.0) -> dict[str, Any]:
    """Poll a Durable status URL until the instance is in a terminal state; returns the status document."""

    async def finished() -> dict[str, Any] | None:
        response = await client.get(status_uri)
        # 202 while running, 200 when done (the Durable HTTP API); a restarting host may refuse a connection.
        assert response.status_code in (200, 202), response.text
        body = response.json()
        return body if body.get("runtimeStatus") in TERMINAL else None

    return await eventually(finished, within=within, interval=0.1)
