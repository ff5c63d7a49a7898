"""The LLM engine pointed at a local OpenAI-compatible server (Ollama, llama.cpp server, vLLM), as the README shows:
``LLM_PROVIDER=openai`` and ``OPENAI_BASE_URL``, no key. The local protocol server stands in for the model server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from memory_core.adapters.openai_models import build_chat_model
from memory_core.config import Settings
from memory_core.domain import Turn
from memory_core.engines import build_chat_model as build_configured_chat_model
from tests.support.fake_openai import FakeOpenAIServer, chat_reply

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TURNS = [
    Turn(
        user_id="u",
        session_id="s",
        seq=1,
        turn_id="t1",
        user_message="We're relocating to Denver.",
        agent_message="Exciting!",
        timestamp=T0,
    )
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "LLM_PROVIDER", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:  # no key, like a local model server
        yield fake


def local_server_settings(server: FakeOpenAIServer) -> Settings:
    return Settings(
        LLM_PROVIDER="openai",
        OPENAI_BASE_URL=server.openai_base_url,
        OPENAI_MODEL="llama3.1:8b",
        EMBEDDINGS_PROVIDER="none",
    )  # type: ignore[call-arg]


async def test_the_configured_engine_is_the_openai_adapter_at_the_local_url(server: FakeOpenAIServer) -> None:
    model = build_configured_chat_model(local_server_settings(server))
    try:
        assert model.name == "openai:llama3.1:8b"
        server.enqueue(chat_reply("User: We're relocating to Denver."))
        summary = await model.summarize_session([], TURNS, max_words=50)
    finally:
        await model.close()
    assert summary == "User: We're relocating to Denver."
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "llama3.1:8b"
    assert "We're relocating to Denver." in request.prompt_text


async def test_insights_come_back_from_a_local_server_without_a_key(server: FakeOpenAIServer) -> None:
    answer = {
        "insights": [
            {"key": "location", "category": "location", "text": "The user is moving to Denver.", "source_turns": [1]}
        ]
    }
    server.enqueue(chat_reply(json.dumps(answer)))
    model = build_chat_model(local_server_settings(server))
    try:
        insights = await model.extract_insights(TURNS)
    finally:
        await model.close()
    assert [(i.key, i.text, i.source_turns) for i in insights] == [("location", "The user is moving to Denver.", [1])]
    assert server.requests[0].body["response_format"] == {"type": "json_object"}
