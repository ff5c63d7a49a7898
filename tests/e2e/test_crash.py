"""SIGKILL the host in the middle of a load: after a restart on the same state, nothing acknowledged is lost.

A service of its own (it is killed): several clients store turns into one session while another session has just
been ended; the host is killed, started again on the same state dir and store, and then every turn that got a 2xx
is in the store exactly once and the reflection of the ended session completes. Run with and without Azure's queue
latency (with it, the kill always finds background work in flight).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from memory_core.session import batch_due, batch_window
from tests.e2e.conftest import AZURE_LATENCY_MS
from tests.e2e.helpers import (
    assert_exactly_once,
    background_wait,
    context,
    eventually,
    export,
    follow,
    session_turns,
    start,
    store,
    unique,
)
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e

WRITERS = 6
ACKED_BEFORE_KILL = 60
ENDED_TURNS = 16  # above REFLECTION_THRESHOLD_TURNS: reflection extracts insights too


@pytest.mark.parametrize("latency_ms", [0, AZURE_LATENCY_MS], ids=["instant", "azure-latency"])
async def test_sigkill_under_load_loses_no_acknowledged_turn_and_reflection_resumes(tmp_path: Path, latency_ms: int):
    service = MemoryServiceProcess(tmp_path, {"REFLECTION_THRESHOLD_TURNS": "15"}, durable_latency_ms=latency_ms)
    service.start()
    try:
        user = unique("crash")
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
            ending = (await start(http, user))["session_id"]
            for n in range(1, ENDED_TURNS + 1):
                fact = f"I have been to country number {n} and I love its food."
                response = await store(http, user, ending, f"e{n}", fact, f"Country {n} has great food.")
                assert response.status_code == 201, response.text
            loaded = (await start(http, user))["session_id"]

        sent: set[str] = set()
        acked: set[str] = set()
        refused: list[tuple[str, int, str]] = []
        stop = asyncio.Event()

        async def writer(n: int) -> None:
            async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as own:
                i = 0
                while not stop.is_set():
                    turn_id = f"w{n}-{i}"
                    sent.add(turn_id)
                    try:
                        response = await store(own, user, loaded, turn_id, f"Writer {n}, line {i}.", "Noted.")
                    except httpx.TransportError:
                        return  # the host is gone: this turn's fate is unknown to the client
                    if response.is_success:
                        acked.add(turn_id)
                    else:
                        refused.append((turn_id, response.status_code, response.text))
                    i += 1

        writers = [asyncio.create_task(writer(n)) for n in range(WRITERS)]

        async def enough_acked():
            return len(acked) >= ACKED_BEFORE_KILL

        await eventually(enough_acked, within=30, interval=0.01)
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
            response = await http.post("/sessions/end", json={"user_id": user, "session_id": ending})
            assert response.status_code == 202, response.text
            status_uri = service.url(response.json()["statusQueryGetUri"])
        service.kill()  # mid-load, right after the end was accepted
        stop.set()
        await asyncio.gather(*writers)
        assert not refused, refused[:5]
        acked_at_kill = set(acked)

        service.start()  # the same state dir, store and port
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
            # Every acknowledged turn is there at once; in-flight turns whose answer was lost may be there too;
            # nothing else, and nothing twice.
            turns = session_turns(await export(http, user), loaded)
            assert acked_at_kill <= {t["turn_id"] for t in turns}
            assert_exactly_once(turns)
            assert {t["turn_id"] for t in turns} <= sent
            ctx = await context(http, user, loaded)
            assert ctx["turn_count"] == len(turns) >= ACKED_BEFORE_KILL

            # The session still takes turns after the crash, numbered after the others.
            after = await store(http, user, loaded, "after-crash", "I am back.", "Welcome back.")
            assert after.status_code == 201 and after.json()["seq"] == len(turns) + 1
            ctx = await context(http, user, loaded)
            assert ctx["turn_count"] == len(turns) + 1

            # The reflection asked for right before the kill completes after the restart.
            status = await follow(http, status_uri, within=background_wait(service, 8))
            assert status["runtimeStatus"] == "Completed", status
            assert status["output"]["turn_count"] == ENDED_TURNS and status["output"]["summary"]
            summaries = (await http.post("/summaries", json={"user_id": user})).json()
            assert [item["session_id"] for item in summaries["items"]] == [ending]
            refused_late = await store(http, user, ending, "late", "One more thing.", "Too late.")
            assert refused_late.status_code == 409

            # The background work the kill interrupted resumes: the batch every acknowledged turn started (K=5,
            # L=10: at turns 15, 25, ...) indexes its window. (The batch of a turn that was stored but never
            # acknowledged, if the kill came before it was started, is the cleanup timer's.)
            windows = [
                batch_window(t["seq"], 5, 10)
                for t in turns
                if t["turn_id"] in acked_at_kill and batch_due(t["seq"], 5, 10)
            ]

            async def indexed():
                record = next(s for s in (await export(http, user))["sessions"] if s["session_id"] == loaded)
                done = set(range(1, record["indexed_through"] + 1))
                done |= {seq for first, last in record["indexed_ahead"] for seq in range(first, last + 1)}
                return record if all(set(range(first, last + 1)) <= done for first, last in windows) else None

            await eventually(indexed, within=background_wait(service, 6), interval=0.5)
    finally:
        service.stop()
