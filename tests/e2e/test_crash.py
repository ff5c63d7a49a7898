"""SIGKILL the host in the middle of a load: after a restart on the same state, nothing acknowledged is lost.

A service of its own (it is killed): several clients store turns into one session while another session has just
been ended; the host is killed, started again on the same state dir and store, and then every turn that got a 2xx
is in the store exactly once and the reflection of the ended session completes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import (
    assert_exactly_once,
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


async def test_sigkill_under_load_loses_no_acknowledged_turn_and_reflection_resumes(tmp_path: Path):
    service = MemoryServiceProcess(tmp_path, {"CONTEXT_WAIT_SECONDS": "10", "REFLECTION_THRESHOLD_TURNS": "15"})
    service.start()
    try:
        user = unique("crash")
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
            ending = (await start(http, user))["session_id"]
            for n in range(1, ENDED_TURNS + 1):
                fact = f"I have been to country number {n} and I love its food."
                response = await store(http, user, ending, f"e{n}", fact, f"Country {n} has great food.")
                assert response.status_code == 202, response.text
            await context(http, user, ending, after_turn_id=f"e{ENDED_TURNS}")
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

            async def all_acked_stored():
                turns = session_turns(await export(http, user), loaded)
                return turns if acked_at_kill <= {t["turn_id"] for t in turns} else None

            turns = await eventually(all_acked_stored, within=30, interval=0.2)

            # In-flight turns whose answer was lost may be there too; nothing else, and nothing twice.
            async def settled():
                stored = session_turns(await export(http, user), loaded)
                hot = await context(http, user, loaded)
                return stored if hot["turn_count"] == len(stored) else None

            turns = await eventually(settled, within=15, interval=0.2)
            assert_exactly_once(turns)
            assert {t["turn_id"] for t in turns} <= sent
            ctx = await context(http, user, loaded)
            assert ctx["turn_count"] == len(turns) >= ACKED_BEFORE_KILL

            # The session still takes turns after the crash, numbered after the others.
            assert (await store(http, user, loaded, "after-crash", "I am back.", "Welcome back.")).status_code == 202
            ctx = await context(http, user, loaded, after_turn_id="after-crash")
            assert ctx["turn_count"] == len(turns) + 1

            # The reflection asked for right before the kill completes after the restart.
            status = await follow(http, status_uri, within=30)
            assert status["runtimeStatus"] == "Completed", status
            assert status["output"]["turn_count"] == ENDED_TURNS and status["output"]["summary"]
            summaries = (await http.post("/summaries", json={"user_id": user})).json()
            assert [item["session_id"] for item in summaries["items"]] == [ending]
            refused_late = await store(http, user, ending, "late", "One more thing.", "Too late.")
            assert refused_late.status_code == 409
    finally:
        service.stop()
