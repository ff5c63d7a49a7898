"""The guide's demo against a running memory service (``make run``): the Python client, step by step.

    make run                                   # in one terminal: the service on http://localhost:7071
    python examples/demo1_remote.py            # in another
    python examples/demo1_remote.py --url http://localhost:7072 --user alice

It starts a session, stores a short conversation (16 turns: reflection extracts insights from
``REFLECTION_THRESHOLD_TURNS`` = 15 turns on), shows the context and a search, ends the session and waits for its
reflection (summary and insights), then starts a second session whose context remembers the first.

The URL comes from ``--url``, else ``MEMORY_SERVICE_URL``, else http://localhost:7071. ``MEMORY_SERVICE_KEY`` is sent as
the function key (Azure). Exit status: 0 when every step worked, 1 when a step failed, 2 when the service cannot be
reached.
"""

# ruff: noqa: T201 (a demo prints)
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import textwrap
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing the client

from memory_client import MemoryServiceClient, MemoryServiceError, ServiceUnavailable

RULE = "=" * 72

CONVERSATION = [
    ("Hi! My name is Dana Whitfield.", "Nice to meet you, Dana. How can I help you today?"),
    ("I work as a pediatric nurse at Mercy Hospital.", "That is demanding and important work."),
    ("What is a 401k?", "A 401k is an employer-sponsored retirement savings plan with tax advantages."),
    ("I live in Portland, Oregon.", "Portland is a lovely city with great parks."),
    ("I prefer low-risk investments.", "Then bond funds and target-date funds may suit you."),
    ("How much should I keep in an emergency fund?", "Three to six months of expenses is a common rule."),
    ("I love hiking in the Columbia River Gorge.", "The Gorge has wonderful trails."),
    ("I am vegetarian.", "I will keep that in mind for any food suggestions."),
    ("What is the difference between a Roth IRA and a traditional IRA?", "Roth contributions are taxed now."),
    ("I plan to buy a house next year.", "Saving for a down payment in a high-yield account could help."),
    ("My daughter Maya starts college in 2027.", "That gives you a few years to plan for tuition."),
    ("Is a 529 plan a good idea for her?", "A 529 plan grows tax-free when used for education."),
    ("I am allergic to peanuts.", "Noted, I will avoid peanuts in any recipe ideas."),
    ("I want to retire at 60.", "Retiring at 60 means maximising your contributions now."),
    ("I prefer green tea over coffee.", "Green tea it is."),
    ("How do I rebalance my portfolio?", "Sell what grew beyond its target share and buy what fell below."),
]
QUERY = "What did we discuss about retirement?"


def heading(title: str) -> None:
    """A section heading."""
    print(f"\n{RULE}\n{title}\n{RULE}")


def block(text: str) -> None:
    """Indented text (the formatted context, a summary)."""
    print(textwrap.indent(text.strip() or "(empty)", "    "))


class StepFailed(Exception):
    """A step of the demo did not give what it should."""


async def demo(url: str, user_id: str, api_key: str | None, reflection_timeout: float) -> None:
    """Every step of the guide's flow, printed."""
    # degrade=False: the demo shows failures instead of carrying on without memory as an agent would.
    async with MemoryServiceClient(url, user_id, api_key, degrade=False, max_attempts=2) as client:
        heading(f"0. Memory service at {url}")
        health = await client.health()
        print(
            f"Status: {health['status']} (store: {health['store']}, llm: {health['llm']}, "
            f"embeddings: {health['embeddings']})"
        )
        print(f"User: {user_id}")

        heading("1. Start a session")
        context = await client.start_session()
        print(f"Session: {context['session_id']} (restored: {context['restored']})")
        print("Formatted context (inject it into your agent's prompt):")
        block(context["formatted_context"])

        heading(f"2. Store {len(CONVERSATION)} turns")
        for number, (user_message, agent_message) in enumerate(CONVERSATION, 1):
            stored = await client.store_turn(user_message, agent_message)
            print(f"  [{number:2d}] {stored['status']:8s} User: {user_message}")
            print(f"       {'':8s} Agent: {agent_message}")

        heading("3. Context after the turns (it waits for the last stored turn: read-your-writes)")
        context = await client.get_context()
        print(f"Turns in session: {context['turn_count']}")
        print("Formatted context:")
        block(context["formatted_context"])
        if context["turn_count"] != len(CONVERSATION):
            raise StepFailed(f"the context counts {context['turn_count']} turns, expected {len(CONVERSATION)}")

        heading(f"4. Retrieve: {QUERY!r}")
        found = await client.retrieve(QUERY, top_k=3)
        print(f"Facts ({found['count']}):")
        for fact in found["facts"]:
            print(f"  - {fact.replace(chr(10), ' | ')}")

        heading("5. End the session and wait for reflection")
        handle = await client.end_session()
        print(f"Reflection started: {handle['id']}")
        print(f"Status URL: {handle.get('statusQueryGetUri')}")
        status = await client.wait_for_reflection(handle, reflection_timeout)
        print(f"Reflection: {status['runtimeStatus']}")
        if status["runtimeStatus"] != "Completed":
            raise StepFailed(f"reflection ended {status['runtimeStatus']}: {status.get('output')}")
        output = status.get("output") or {}
        print("Summary:")
        block(output.get("summary") or "")
        insights = await client.get_insights(include_superseded=True)
        texts = {item["id"]: item["text"] for item in insights["items"]}
        added = output.get("insights_added", [])
        updated = output.get("insights_updated", [])
        print(f"Insights ({len(added)} added, {len(updated)} updated, {output.get('duplicates', 0)} duplicates):")
        for insight_id in [*added, *updated]:
            print(f"  - {texts.get(insight_id, insight_id)}")

        heading("6. A new session remembers: its context starts with the insights and the last summary")
        context = await client.start_session()
        print(f"Session: {context['session_id']}")
        block(context["formatted_context"])
        summaries = await client.get_summaries(limit=3)
        print(f"Session summaries stored for {user_id}: {summaries['count']}")
        await client.end_session()

        heading("Done: every step worked")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the demo, and turn failures into a message and an exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--url",
        default=os.environ.get("MEMORY_SERVICE_URL", "http://localhost:7071"),
        help="service URL (default: $MEMORY_SERVICE_URL or http://localhost:7071)",
    )
    parser.add_argument("--user", default=f"demo-{uuid.uuid4().hex[:8]}", help="user id (default: a new demo user)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for reflection (default 60)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(demo(args.url, args.user, os.environ.get("MEMORY_SERVICE_KEY"), args.timeout))
    except ServiceUnavailable as error:
        print(
            f"\nERROR: the memory service at {args.url} is not available: {error}\n"
            "Start it with `make run` (or pass --url / set MEMORY_SERVICE_URL).",
            file=sys.stderr,
        )
        return 2
    except (MemoryServiceError, StepFailed) as error:
        print(f"\nERROR: a step failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
