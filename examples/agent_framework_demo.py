"""The guide's Pattern 1: an Agent Framework agent with ``CosmosMemoryProvider``, offline, against ``make run``.

    make run                                        # in one terminal
    python examples/agent_framework_demo.py         # in another (--url, --user as in demo1_remote.py)

A real ``agent_framework.Agent`` runs with a stand-in chat model (``OfflineChatClient``, below) so that no model
service or key is needed: it answers from the memory context the provider injected, which makes visible what the
agent remembers. Swap it for a real client (e.g. ``agent_framework.openai.OpenAIChatClient``) and nothing else
changes. Needs the extra: ``pip install './memory_client[agent-framework]'``.

Session 1 tells the agent a few facts, then asks about one of them; the session is ended (reflection: summary and
insights). Session 2 is new, and the agent still knows the user: from the summary of session 1 (and from insights,
which reflection extracts once a session has ``REFLECTION_THRESHOLD_TURNS`` turns, 15 by default).
"""

# ruff: noqa: T201 (a demo prints)
from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing the client

from agent_framework import (
    Agent,
    BaseChatClient,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    Message,
    ResponseStream,
)

from memory_client import MemoryServiceClient, MemoryServiceError, ServiceUnavailable
from memory_client.cosmos_memory_provider import MEMORY_CONTEXT_START, CosmosMemoryProvider

RULE = "=" * 72

# What the stand-in model can answer: a question, and where the answer is found in the memory context (the user's
# own words in the latest turns or a session summary, or an insight after reflection).
KNOWLEDGE = [
    (
        re.compile(r"what is my name", re.I),
        re.compile(r"(?:[Mm]y name is|user's name is) ([A-Z]\w+)"),
        "Your name is {}.",
    ),
    (re.compile(r"where do I live", re.I), re.compile(r"(?:I live|user lives) in ([A-Z]\w+)"), "You live in {}."),
    (re.compile(r"what do I do", re.I), re.compile(r"(?:I work|user works) as an? ([a-z ]+?)[.!,]"), "You are a {}."),
]


class OfflineChatClient(FunctionInvocationLayer[Any], BaseChatClient[Any]):
    """A deterministic stand-in for a chat model: it answers questions from the injected memory context.

    It is an Agent Framework chat client like any other (``BaseChatClient`` with the framework's
    ``FunctionInvocationLayer``, without which ``Agent`` warns that tools cannot be called), so the agent, its
    context providers and its middleware run for real. ``requests`` keeps every request (messages and options).
    """

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[list[Message], dict[str, Any]]] = []

    def answer(self, messages: Sequence[Message]) -> str:
        """The reply to the last user message, from the memory context message when it holds the answer."""
        memory = "\n".join(m.text for m in messages if MEMORY_CONTEXT_START in m.text)
        said = [m.text for m in messages if m.role == "user" and MEMORY_CONTEXT_START not in m.text]
        question = said[-1] if said else ""
        for asked, fact, reply in KNOWLEDGE:
            if asked.search(question):
                found = fact.findall(memory)
                return f"{reply.format(found[-1])} (I remember it.)" if found else "I don't know that yet."
        return "Noted, thank you."

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **kwargs: Any
    ) -> Awaitable[ChatResponse] | ResponseStream[ChatResponseUpdate, ChatResponse]:
        self.requests.append((list(messages), dict(options)))
        text = self.answer(messages)
        if stream:

            async def updates() -> AsyncIterator[ChatResponseUpdate]:
                yield ChatResponseUpdate(role="assistant", contents=[Content.from_text(text)])

            return self._build_response_stream(updates())

        async def response() -> ChatResponse:
            return ChatResponse(messages=[Message("assistant", [text])])

        return response()


def heading(title: str) -> None:
    """A section heading."""
    print(f"\n{RULE}\n{title}\n{RULE}")


async def chat(agent: Agent[Any], text: str) -> str:
    """One run of the agent, printed."""
    response = await agent.run(text)
    print(f"User:  {text}")
    print(f"Agent: {response.text}")
    return response.text


def show_request(model: OfflineChatClient) -> None:
    """What the last request to the model held: instructions, then each message with its role."""
    messages, options = model.requests[-1]
    print(f"System instructions: {options.get('instructions')!r}")
    for message in messages:
        print(f"[{message.role}]")
        print(textwrap.indent(message.text, "    "))


async def demo(url: str, user_id: str) -> None:
    """Two sessions of an agent with memory."""
    model = OfflineChatClient()
    instructions = "You are a helpful assistant."

    heading(f"Session 1 (user {user_id}, memory service {url})")
    async with CosmosMemoryProvider(service_url=url, user_id=user_id, auto_manage_session=True) as memory_provider:
        agent = Agent(client=model, instructions=instructions, context_providers=[memory_provider])
        await chat(agent, "Hi! My name is Dana and I live in Portland.")
        await chat(agent, "I work as a pediatric nurse.")
        await chat(agent, "Quick check: what is my name?")
        heading("What the model received for the last run (memory is a delimited message, not instructions)")
        show_request(model)

        heading("End of session 1: reflection")
        handle = await memory_provider.end_session()
        status = await memory_provider.wait_for_reflection(handle, 60)
        print(f"Reflection: {status['runtimeStatus']}")
        output = status.get("output") or {}
        print("Summary:")
        print(textwrap.indent(output.get("summary") or "(none)", "    "))

    heading("Session 2: a new session, the same user")
    async with CosmosMemoryProvider(service_url=url, user_id=user_id, auto_manage_session=True) as memory_provider:
        agent = Agent(client=model, instructions=instructions, context_providers=[memory_provider])
        await chat(agent, "Where do I live?")
        await chat(agent, "What do I do for a living?")
    print("\n(the provider ended session 2 when its `async with` block closed)")


async def check_service(url: str, user_id: str) -> None:
    """Fail early and clearly when the service is not there (the provider itself would carry on without memory)."""
    async with MemoryServiceClient(url, user_id, max_attempts=2) as client:
        await client.health()


def main(argv: list[str] | None = None) -> int:
    """Run the demo; a clear message and a non-zero exit status when the service is not there."""
    parser = argparse.ArgumentParser(description="Agent Framework agent with CosmosMemoryProvider, offline")
    parser.add_argument("--url", default=os.environ.get("MEMORY_SERVICE_URL", "http://localhost:7071"))
    parser.add_argument("--user", default=f"af-demo-{uuid.uuid4().hex[:8]}")
    args = parser.parse_args(argv)
    try:
        asyncio.run(check_service(args.url, args.user))
        asyncio.run(demo(args.url, args.user))
    except ServiceUnavailable as error:
        print(
            f"\nERROR: the memory service at {args.url} is not available: {error}\nStart it with `make run`.",
            file=sys.stderr,
        )
        return 2
    except MemoryServiceError as error:
        print(f"\nERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
