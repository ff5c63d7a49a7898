"""Many clients storing into one session at once: every turn lands exactly once, numbered 1..N without gaps."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.helpers import assert_exactly_once, context, eventually, export, session_turns, start, store, unique
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e

CLIENTS = 20
TURNS_PER_CLIENT = 5
K = 5


def message(client_no: int, turn_no: int) -> tuple[str, str]:
    return (
        f"Client {client_no} says: this is my message number {turn_no}.",
        f"Reply to client {client_no}, message {turn_no}.",
    )


async def test_twenty_concurrent_clients_with_retries_store_every_turn_exactly_once(
    shared_service: MemoryServiceProcess, client: httpx.AsyncClient
):
    user = unique("crowd")
    session_id = (await start(client, user))["session_id"]
    gate = asyncio.Barrier(CLIENTS)
    statuses: list[int] = []

    async def one_client(client_no: int) -> None:
        # A client of its own: its own connection, as separate agents would have.
        async with httpx.AsyncClient(base_url=shared_service.base_url, timeout=30) as own:
            await gate.wait()
            for turn_no in range(TURNS_PER_CLIENT):
                turn_id = f"c{client_no:02d}-{turn_no}"
                user_message, agent_message = message(client_no, turn_no)
                if client_no % 4 == 0 and turn_no == 1:
                    # A retry racing the original (the client timed out and sent it again at once).
                    responses = await asyncio.gather(
                        store(own, user, session_id, turn_id, user_message, agent_message),
                        store(own, user, session_id, turn_id, user_message, agent_message),
                    )
                else:
                    responses = [await store(own, user, session_id, turn_id, user_message, agent_message)]
                for response in responses:
                    assert response.status_code == 202, response.text
                    assert response.json()["turn_id"] == turn_id
                    statuses.append(response.status_code)
            if client_no % 2 == 1:
                # A late retry of the client's first turn, after the rest were accepted.
                user_message, agent_message = message(client_no, 0)
                response = await store(own, user, session_id, f"c{client_no:02d}-0", user_message, agent_message)
                assert response.status_code == 202, response.text
                statuses.append(response.status_code)

    await asyncio.gather(*(one_client(n) for n in range(CLIENTS)))
    expected = {f"c{c:02d}-{t}" for c in range(CLIENTS) for t in range(TURNS_PER_CLIENT)}
    assert len(statuses) == len(expected) + CLIENTS // 4 + CLIENTS // 2  # the retries were accepted too

    # Read your writes: every client's last turn is in the session once the context says so.
    for client_no in range(CLIENTS):
        ctx = await context(client, user, session_id, after_turn_id=f"c{client_no:02d}-{TURNS_PER_CLIENT - 1}")
    assert ctx["turn_count"] == len(expected)

    async def all_persisted():
        turns = session_turns(await export(client, user), session_id)
        return turns if len(turns) >= len(expected) else None

    turns = await eventually(all_persisted, within=20)
    assert_exactly_once(turns, expected)
    for turn in turns:  # no turn got another turn's content
        client_no, turn_no = (int(part) for part in turn["turn_id"][1:].split("-"))
        assert (turn["user_message"], turn["agent_message"]) == message(client_no, turn_no)

    # The hot session agrees with the store: the same count, the last K turns in sequence order.
    ctx = await context(client, user, session_id)
    assert ctx["turn_count"] == len(expected)
    recent = [m["content"] for m in ctx["active_context"] if m["role"] == "user"]
    assert recent == [t["user_message"] for t in turns[-K:]]
