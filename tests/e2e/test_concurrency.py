"""Many clients storing into one session at once: every turn lands exactly once, numbered 1..N without gaps.

Runs with and without Azure's queue latency: the turns are numbered and stored by the store itself, so neither their
number nor their order depends on how Durable delivers background work.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.helpers import assert_exactly_once, context, export, session_turns, start, store, unique
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
    any_service: MemoryServiceProcess, any_client: httpx.AsyncClient
):
    client = any_client
    user = unique("crowd")
    session_id = (await start(client, user))["session_id"]
    gate = asyncio.Barrier(CLIENTS)
    answers: dict[str, list[int]] = {}  # turn id -> statuses of every answer it got
    seqs: dict[int, list[int]] = {}  # client -> the seq of each of its turns, in the order it sent them

    async def one_client(client_no: int) -> None:
        # A client of its own: its own connection, as separate agents would have.
        async with httpx.AsyncClient(base_url=any_service.base_url, timeout=30) as own:
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
                    assert response.status_code in (200, 201), response.text
                    assert response.json()["turn_id"] == turn_id
                    answers.setdefault(turn_id, []).append(response.status_code)
                seqs.setdefault(client_no, []).append(responses[0].json()["seq"])
                # Read your own write at once, without naming it.
                ctx = await context(own, user, session_id)
                assert ctx["turn_count"] >= seqs[client_no][-1]
            if client_no % 2 == 1:
                # A late retry of the client's first turn, after the rest were stored.
                user_message, agent_message = message(client_no, 0)
                response = await store(own, user, session_id, f"c{client_no:02d}-0", user_message, agent_message)
                assert response.status_code == 200 and response.json()["duplicate"] is True, response.text
                assert response.json()["seq"] == seqs[client_no][0]

    await asyncio.gather(*(one_client(n) for n in range(CLIENTS)))
    expected = {f"c{c:02d}-{t}" for c in range(CLIENTS) for t in range(TURNS_PER_CLIENT)}
    assert set(answers) == expected
    for turn_id, statuses in answers.items():
        # Stored once (201); every repeat, racing or late, is told it is that same turn (200).
        assert statuses.count(201) == 1, (turn_id, statuses)
    for client_no, numbers in seqs.items():
        assert numbers == sorted(numbers), f"client {client_no}'s turns were swapped: {numbers}"

    # Every turn is in the store and in the context as soon as the last answer came: nothing to wait for.
    turns = session_turns(await export(client, user), session_id)
    assert_exactly_once(turns, expected)
    for turn in turns:  # no turn got another turn's content
        client_no, turn_no = (int(part) for part in turn["turn_id"][1:].split("-"))
        assert (turn["user_message"], turn["agent_message"]) == message(client_no, turn_no)
    ctx = await context(client, user, session_id)
    assert ctx["turn_count"] == len(expected)
    recent = [m["content"] for m in ctx["active_context"] if m["role"] == "user"]
    assert recent == [t["user_message"] for t in turns[-K:]]
