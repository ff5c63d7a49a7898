"""A recording stand-in chat model for Agent Framework agents (a real ``BaseChatClient``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any

from agent_framework import (
    BaseChatClient,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    Message,
    ResponseStream,
)


class RecordingChatClient(FunctionInvocationLayer[Any], BaseChatClient[Any]):
    """Answers ``reply(last user text)`` and records every request's messages and options."""

    def __init__(self, reply: Any = None) -> None:
        super().__init__()
        self.reply = reply or (lambda text: f"You said: {text}")
        self.requests: list[tuple[list[Message], dict[str, Any]]] = []

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **kwargs: Any
    ) -> Awaitable[ChatResponse] | ResponseStream[ChatResponseUpdate, ChatResponse]:
        self.requests.append((list(messages), dict(options)))
        text = self.reply(messages[-1].text)
        if stream:

            async def updates() -> AsyncIterator[ChatResponseUpdate]:
                yield ChatResponseUpdate(role="assistant", contents=[Content.from_text(text)])

            return self._build_response_stream(updates())

        async def response() -> ChatResponse:
            return ChatResponse(messages=[Message("assistant", [text])])

        return response()
