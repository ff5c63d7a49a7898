"""The guide's Pattern 2 as its own client sends it, with and without Azure's queue latency.

The guide's source project (github james-tn/agent-memory, ``client/memory_client.py``) talks to the service with
these exact requests; it is not vendored here, so this test sends what that client sends, call for call: it picks a
uuid4 ``session_id`` itself and starts it with ``restore: true``, never sends a ``turn_id`` or ``after_turn_id``,
calls ``raise_for_status()`` on every answer, and reads ``session_id``, ``facts``, ``insights`` and ``summaries``.
(The same flow was run with the guide's client itself against ``python run_server.py``; see the README.)
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.helpers import background_wait, eventually, unique
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e


async def test_pattern_2_runs_its_whole_flow_without_an_error(
    any_client: httpx.AsyncClient, any_service: MemoryServiceProcess
):
    http, user, session_id = any_client, unique("user"), str(uuid.uuid4())

    async def post(path: str, payload: dict) -> dict:
        response = await http.post(path, json=payload)
        response.raise_for_status()  # what the guide's client does with every answer
        return response.json()

    # start_session(restore=True): its own session id, which no session has yet
    started = await post("/sessions/start", {"user_id": user, "session_id": session_id, "restore": True})
    assert started["session_id"] == session_id and started["restored"] is False

    # store_turn() twice, then get_context() at once: the context holds both turns
    await post(
        "/memory/store",
        {
            "user_id": user,
            "session_id": session_id,
            "user_message": "What is a 401k?",
            "agent_message": "A 401k is a retirement savings plan...",
        },
    )
    await post(
        "/memory/store",
        {
            "user_id": user,
            "session_id": session_id,
            "user_message": "I live in Lisbon and I prefer green tea.",
            "agent_message": "Noted.",
        },
    )
    context = await post("/memory/context", {"user_id": user, "session_id": session_id})
    assert context["turn_count"] == 2
    assert context["active_context"][-2]["content"] == "I live in Lisbon and I prefer green tea."

    # retrieve_facts(), get_insights(), get_summaries()
    found = await post(
        "/memory/retrieve", {"user_id": user, "session_id": session_id, "query": "Where do I live?", "top_k": 5}
    )
    assert any("Lisbon" in fact for fact in found["facts"])
    assert (await post("/insights", {"user_id": user, "recent_only": False}))["insights"] == []
    assert (await post("/summaries", {"user_id": user, "limit": 5}))["summaries"] == []

    # end_session(), health_check(), get_stats()
    ended = await post("/sessions/end", {"user_id": user, "session_id": session_id})
    assert ended["session_id"] == session_id
    health = await http.get("/health")
    health.raise_for_status()
    stats = await http.get("/stats")
    stats.raise_for_status()
    assert {"total_sessions", "dirty_sessions", "max_capacity"} <= set(stats.json())

    # The guide's troubleshooting: an ended session is "Session not found" when restored.
    gone = await http.post("/sessions/start", json={"user_id": user, "session_id": session_id, "restore": True})
    assert gone.status_code == 404 and gone.json()["detail"] == "Session not found"

    # A new client of the same user (a new uuid, restore=true again) starts with the last session's summary.
    async def next_session() -> dict | None:
        body = await post("/sessions/start", {"user_id": user, "session_id": str(uuid.uuid4()), "restore": True})
        return body if body["session_summaries"] else None

    following = await eventually(next_session, within=background_wait(any_service, 6), interval=0.5)
    assert following["restored"] is False and len(following["session_summaries"]) == 1
