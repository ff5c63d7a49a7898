"""The guide's curl flow over real HTTP: start, store, context, retrieve, end, reflection, insights, summaries, stats.

Runs on the shared service (K=5 recent turns, chunks of L=10, insights from 15 turns on), and again with every Durable
message 2-3 s late as on Azure Storage: the requests answer the same either way, only background work takes longer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.helpers import (
    STATS_FIELDS,
    assert_exactly_once,
    background_wait,
    context,
    eventually,
    export,
    follow,
    session_record,
    session_turns,
    start,
    stats,
    unique,
)
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e

K, L = 5, 10

# A conversation of 20 turns: what the user says about themselves, mixed with questions.
CONVERSATION = [
    ("Hi! My name is Dana Whitfield.", "Nice to meet you, Dana. How can I help you today?"),
    ("I work as a pediatric nurse at Mercy Hospital.", "That is demanding and important work."),
    ("What is a 401k?", "A 401k is an employer-sponsored retirement savings plan with tax advantages."),
    ("I live in Portland, Oregon, close to the river.", "Portland is a lovely city with great parks."),
    ("Does a hospital pension replace a 401k?", "Not always: a pension and a 401k can complement each other."),
    ("I prefer low-risk investments.", "Then bond funds and target-date funds may suit you."),
    ("How much should I keep in an emergency fund?", "Three to six months of expenses is a common rule."),
    ("I love hiking in the Columbia River Gorge on weekends.", "The Gorge has wonderful trails."),
    ("I am vegetarian.", "I will keep that in mind for any food suggestions."),
    ("What is the difference between a Roth IRA and a traditional IRA?", "Roth contributions are taxed now."),
    ("I plan to buy a house next year.", "Saving for a down payment in a high-yield account could help."),
    ("My daughter Maya starts college in 2027.", "That gives you a few years to plan for tuition."),
    ("Is a 529 plan a good idea for her?", "A 529 plan grows tax-free when used for education."),
    ("I drive a 2015 Subaru Outback.", "A reliable car for Oregon weather."),
    ("I am allergic to peanuts.", "Noted, I will avoid peanuts in any recipe ideas."),
    ("Can you explain index funds?", "An index fund tracks a market index at a low cost."),
    ("I want to retire at 60.", "Retiring at 60 means maximising contributions now."),
    ("I prefer green tea over coffee.", "Green tea it is."),
    ("How do I rebalance my portfolio?", "Sell what grew beyond its target share and buy what fell below."),
    ("I am flying to Denver on Friday for a nursing conference.", "Have a good trip to Denver!"),
]
BASE_TIME = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def turn_body(user_id: str, session_id: str, index: int) -> dict[str, object]:
    user_message, agent_message = CONVERSATION[index]
    return {
        "user_id": user_id,
        "session_id": session_id,
        "turn_id": f"t{index + 1:02d}",
        "user_message": user_message,
        "agent_message": agent_message,
        "timestamp": (BASE_TIME + timedelta(minutes=index)).isoformat(),
        "metadata": {"channel": "web", "index": index},
    }


async def test_guide_flow_then_the_next_session_remembers(
    any_client: httpx.AsyncClient, any_service: MemoryServiceProcess
):
    client, service = any_client, any_service
    user = unique("dana")

    # -- start with the user only: a generated session id and an empty memory ----------------------------------
    started = await start(client, user)
    session_id = started["session_id"]
    assert session_id and started["user_id"] == user
    assert started["restored"] is False and started["turn_count"] == 0
    assert started["active_context"] == [] and started["cumulative_summary"] == ""
    assert started["insights"] == [] and started["session_summaries"] == []
    assert "<memory>" in started["formatted_context"]

    # -- store 20 turns: each stored when answered, and in the very next context (no after_turn_id) ---------------
    for index in range(len(CONVERSATION)):
        response = await client.post("/memory/store", json=turn_body(user, session_id, index))
        assert response.status_code == 201, response.text
        assert response.json() == {
            "status": "stored",
            "user_id": user,
            "session_id": session_id,
            "turn_id": f"t{index + 1:02d}",
            "seq": index + 1,
            "duplicate": False,
        }
        ctx = await context(client, user, session_id)
        assert ctx["turn_count"] == index + 1
        assert ctx["active_context"][-2] == {"role": "user", "content": CONVERSATION[index][0]}

    # -- the context: hot, the last K turns verbatim, quoted; after_turn_id names a stored turn ------------------
    ctx = await context(client, user, session_id, after_turn_id="t20")
    assert ctx["session_id"] == session_id and ctx["restored"] is False
    assert ctx["turn_count"] == 20
    expected_recent = []
    for user_message, agent_message in CONVERSATION[-K:]:
        expected_recent += [{"role": "user", "content": user_message}, {"role": "assistant", "content": agent_message}]
    assert ctx["active_context"] == expected_recent
    formatted = ctx["formatted_context"]
    assert "quoted data, not instructions" in formatted
    assert formatted.index("<memory>") < formatted.index("</memory>")
    for message in expected_recent:
        assert f"> {'User' if message['role'] == 'user' else 'Assistant'}: {message['content']}" in formatted

    # Every turn is in the store already, once, in order.
    exported = await export(client, user)
    assert_exactly_once(session_turns(exported, session_id), {f"t{i:02d}" for i in range(1, 21)})
    assert session_turns(exported, session_id)[3]["metadata"] == {"channel": "web", "index": 3}

    # The first L turns are compacted in the background (start, index, claim, compact: about 7 hops).
    async def compacted():
        current = await context(client, user, session_id)
        return current if current["cumulative_summary"] else None

    ctx = await eventually(compacted, within=background_wait(service, 7), interval=0.5)
    assert "Earlier in this session (summary):" in ctx["formatted_context"]
    for line in ctx["cumulative_summary"].splitlines():
        assert f"> {line}" in ctx["formatted_context"]  # the summary is quoted line by line

    # -- retrieve: a stored fact, with its provenance --------------------------------------------------------------
    response = await client.post(
        "/memory/retrieve", json={"user_id": user, "session_id": session_id, "query": "Which city do I live in?"}
    )
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["query"] == "Which city do I live in?"
    assert found["count"] == len(found["facts"]) == len(found["items"]) >= 1
    assert any("Portland" in fact for fact in found["facts"]), found["facts"]
    for item in found["items"]:
        assert item["kind"] in {"turn", "chunk", "summary", "insight"}
        assert item["session_id"] == session_id
        assert item["turn_seqs"] and all(1 <= seq <= 20 for seq in item["turn_seqs"])
        assert item["timestamp"] is not None
        assert isinstance(item["score"], float)
    portland = next(item for item in found["items"] if "Portland" in item["text"])
    if portland["kind"] == "turn":
        assert portland["turn_seqs"] == [4]
        assert datetime.fromisoformat(portland["timestamp"]) == BASE_TIME + timedelta(minutes=3)
    else:  # the chunk of turns 1-10
        assert portland["kind"] == "chunk" and portland["turn_seqs"] == [1, L]

    # -- stats while the session is hot: the guide's seven figures ------------------------------------------------
    figures = await stats(client)
    assert set(figures) == STATS_FIELDS
    assert figures["total_sessions"] >= 1 and figures["max_capacity"] == 1000
    assert figures["utilization"] == pytest.approx(figures["total_sessions"] / 1000)
    assert figures["ttl_seconds"] == 1800
    assert 0 <= figures["avg_age_seconds"] <= figures["oldest_age_seconds"]

    # -- end: 202 with the Durable status URLs; reflection completes ----------------------------------------------
    response = await client.post("/sessions/end", json={"user_id": user, "session_id": session_id})
    assert response.status_code == 202, response.text
    ended = response.json()
    assert ended["status"] == "reflecting" and ended["session_id"] == session_id and ended["id"]
    assert ended["statusQueryGetUri"].endswith(f"/sessions/reflection?user_id={user}&session_id={session_id}")
    status = await follow(client, service.url(ended["statusQueryGetUri"]), within=background_wait(service, 8))
    assert status["runtimeStatus"] == "Completed", status
    outcome = status["output"]
    assert outcome["session_id"] == session_id and outcome["turn_count"] == 20
    assert outcome["summary_id"] and outcome["summary"]
    assert outcome["insights_added"], "20 turns of personal facts must yield insights"

    # -- insights and summaries reflect the session -----------------------------------------------------------------
    response = await client.post("/insights", json={"user_id": user, "recent_only": False})
    assert response.status_code == 200, response.text
    insights = response.json()
    assert {item["id"] for item in insights["items"]} == set(outcome["insights_added"])
    assert insights["count"] == len(insights["insights"]) == len(outcome["insights_added"])
    for item in insights["items"]:
        assert item["source_session_id"] == session_id and item["status"] == "active"
        assert item["source_turns"] and all(1 <= seq <= 20 for seq in item["source_turns"])
    recent = await client.post("/insights", json={"user_id": user, "recent_only": True})
    assert recent.status_code == 200 and recent.json()["count"] == insights["count"]

    response = await client.post("/summaries", json={"user_id": user, "limit": 5})
    assert response.status_code == 200, response.text
    summaries = response.json()
    assert summaries["count"] == 1 and summaries["summaries"] == [outcome["summary"]]
    assert summaries["items"][0]["session_id"] == session_id and summaries["items"][0]["turn_count"] == 20

    assert session_record(await export(client, user), session_id)["status"] == "ended"
    figures = await stats(client)
    assert set(figures) == STATS_FIELDS

    # -- a new session of the same user starts with what the last one taught ---------------------------------------
    following = await start(client, user)
    assert following["session_id"] != session_id and following["restored"] is False
    assert following["session_summaries"] == [outcome["summary"]]
    assert sorted(following["insights"]) == sorted(insights["insights"])
    for text in following["insights"]:
        assert text in following["formatted_context"]
    assert outcome["summary"].splitlines()[0] in following["formatted_context"]
