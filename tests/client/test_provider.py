"""CosmosMemoryProvider with the real Agent Framework (agent-framework-core) and a recording stand-in chat model."""

from __future__ import annotations

import logging

import pytest
from agent_framework import Agent, ContextProvider, Message

from memory_client import CosmosMemoryProvider, MemoryServiceClient
from memory_client.cosmos_memory_provider import MEMORY_CONTEXT_END, MEMORY_CONTEXT_START
from tests.client.conftest import FAST
from tests.client.fakes import RecordingChatClient
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e

SERVICE_SETTINGS = {"REFLECTION_THRESHOLD_TURNS": "3"}
INSTRUCTIONS = "You are a helpful assistant."


def memory_messages(messages: list[Message]) -> list[Message]:
    return [m for m in messages if MEMORY_CONTEXT_START in m.text]


async def test_the_second_run_sees_what_the_first_stored(service: MemoryServiceProcess, user: str) -> None:
    model = RecordingChatClient(reply=lambda text: f"Noted: {text}")
    async with CosmosMemoryProvider(
        service_url=service.base_url, user_id=user, auto_manage_session=True, **FAST
    ) as memory_provider:
        assert isinstance(memory_provider, ContextProvider)
        assert memory_provider.session_id is not None  # auto_manage_session: started on entry
        agent = Agent(client=model, instructions=INSTRUCTIONS, context_providers=[memory_provider])

        first = await agent.run("My favourite colour is teal.")
        assert first.text == "Noted: My favourite colour is teal."
        second = await agent.run("What is my favourite colour?")
        assert second.text

        messages, options = model.requests[1]
        # the memory context is one delimited message before the user's input...
        (memory,) = memory_messages(messages)
        assert memory.role == "user"
        assert memory.text.startswith(MEMORY_CONTEXT_START) and memory.text.endswith(MEMORY_CONTEXT_END)
        assert "> User: My favourite colour is teal." in memory.text
        assert "> Assistant: Noted: My favourite colour is teal." in memory.text
        assert memory.additional_properties["_attribution"]["source_id"] == memory_provider.source_id
        assert messages[-1].text == "What is my favourite colour?" and messages.index(memory) < len(messages) - 1
        # ...and not in the system instructions, which stay the agent's own
        assert options["instructions"] == INSTRUCTIONS
        assert all(m.role != "system" for m in messages)

        # the first run's memory was the empty memory of a new user
        (empty,) = memory_messages(model.requests[0][0])
        assert "No memory about this user yet" in empty.text

        # both runs were stored as turns, user input and agent response
        context = await memory_provider.client.get_context()
        assert context["turn_count"] == 2
        assert context["active_context"][-2] == {"role": "user", "content": "What is my favourite colour?"}
        await memory_provider.end_session()


async def test_end_session_triggers_reflection_and_the_next_session_knows(
    service: MemoryServiceProcess, user: str
) -> None:
    model = RecordingChatClient(reply=lambda text: "Got it.")
    async with CosmosMemoryProvider(
        service_url=service.base_url, user_id=user, auto_manage_session=True, **FAST
    ) as memory_provider:
        agent = Agent(client=model, instructions=INSTRUCTIONS, context_providers=[memory_provider])
        for text in ("I live in Lisbon.", "I am vegetarian.", "I work as a teacher."):
            await agent.run(text)
        session_id = memory_provider.session_id

        handle = await memory_provider.end_session()
        assert handle["session_id"] == session_id and memory_provider.session_id is None
        status = await memory_provider.wait_for_reflection(timeout=30)
        assert status["runtimeStatus"] == "Completed"
        assert status["output"]["turn_count"] == 3 and status["output"]["summary"]
        assert len(status["output"]["insights_added"]) == 3
        insights = (await memory_provider.client.get_insights())["insights"]
        assert {"The user lives in Lisbon.", "The user is vegetarian.", "The user works as a teacher."} <= set(insights)

        # a later run starts a new session, whose context holds the insights
        await agent.run("What should I cook tonight?")
        assert memory_provider.session_id not in (None, session_id)
        (memory,) = memory_messages(model.requests[-1][0])
        assert "The user is vegetarian." in memory.text
    # leaving the block ended the second session too (auto_manage_session)
    assert memory_provider.last_reflection is not None
    assert memory_provider.last_reflection["session_id"] != session_id


async def test_streaming_runs_are_stored_and_a_given_client_is_used(service: MemoryServiceProcess, user: str) -> None:
    model = RecordingChatClient(reply=lambda text: "Streamed answer.")
    async with MemoryServiceClient(service.base_url, user, **FAST) as client:
        provider = CosmosMemoryProvider(client=client)  # no auto_manage_session: started on the first run
        agent = Agent(client=model, instructions=INSTRUCTIONS, context_providers=[provider])
        stream = agent.run("Stream this, please.", stream=True)
        async for _ in stream:
            pass
        assert (await stream.get_final_response()).text == "Streamed answer."
        assert provider.session_id is not None
        context = await client.get_context()
        assert context["active_context"] == [
            {"role": "user", "content": "Stream this, please."},
            {"role": "assistant", "content": "Streamed answer."},
        ]
        await provider.aclose()  # does not close a client it was given
        await client.end_session()


async def test_the_agent_keeps_working_when_the_service_is_down(
    closed_url: str, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="memory_client")
    model = RecordingChatClient()
    async with CosmosMemoryProvider(
        service_url=closed_url, user_id=user, auto_manage_session=True, **FAST
    ) as memory_provider:
        agent = Agent(client=model, instructions=INSTRUCTIONS, context_providers=[memory_provider])
        response = await agent.run("Hello?")
        assert response.text == "You said: Hello?"
        assert memory_messages(model.requests[0][0]) == []  # nothing to inject
        assert memory_provider.client.pending_turns == 1  # the turn waits in the buffer
    assert any("Memory service unavailable" in r.getMessage() for r in caplog.records)
    assert any("Could not end memory session" in r.getMessage() for r in caplog.records)


async def test_a_session_ended_elsewhere_is_replaced(
    service: MemoryServiceProcess, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="memory_client")
    model = RecordingChatClient(reply=lambda text: "OK.")
    async with CosmosMemoryProvider(service_url=service.base_url, user_id=user, **FAST) as memory_provider:
        agent = Agent(client=model, instructions=INSTRUCTIONS, context_providers=[memory_provider])
        await agent.run("First run.")
        first_session = memory_provider.session_id
        assert first_session is not None
        async with MemoryServiceClient(service.base_url, user, session_id=first_session) as other:
            await other.end_session()  # e.g. another process of the same app

        response = await agent.run("Second run.")  # no memory this time, but the agent answers...
        assert response.text == "OK."
        assert any("is gone" in r.getMessage() for r in caplog.records)
        # ...and the turn went to a new session, whose memory the third run sees
        assert memory_provider.session_id not in (None, first_session)
        await agent.run("Third run.")
        (memory,) = memory_messages(model.requests[-1][0])
        assert "> User: Second run." in memory.text
        await memory_provider.end_session()
