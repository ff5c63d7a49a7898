"""A local HTTP server that answers like Azure OpenAI and the OpenAI API, for adapter tests through the real SDK.

Routes (JSON shapes as the services answer them):

- ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` and ``POST /v1/chat/completions``
- ``POST /openai/deployments/{deployment}/embeddings?api-version=...`` and ``POST /v1/embeddings``

Every request is recorded in ``server.requests``. Answers come from a scripted FIFO queue (``server.enqueue``);
when the queue is empty the server answers by itself: a fixed chat answer, or deterministic, non-normalised
embeddings (``fake_vector``) in reverse index order (clients must sort by ``index``), base64-encoded when asked.

Authentication is checked before the queue is consulted: with ``api_key`` set, Azure routes need ``api-key: <key>``
and OpenAI routes ``Authorization: Bearer <key>``; with ``bearer_token`` set, ``Authorization: Bearer <token>`` is
accepted on every route. A failed check answers 401 like the services do and consumes nothing from the queue.

Usage::

    async with FakeOpenAIServer(api_key="k") as server:
        server.enqueue(error_reply(429), error_reply(500), chat_reply("ok"))
        ...  # point AZURE_OPENAI_ENDPOINT at server.url, or OPENAI_BASE_URL at server.openai_base_url
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

NATIVE_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
DEFAULT_CHAT_ANSWER = "The user and the assistant talked."


@dataclass
class Reply:
    """One scripted answer: a status, a JSON body (or raw text), headers, and an optional delay before answering."""

    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class SeenRequest:
    """A request as the server received it (header names lowercased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    route: str  # "chat" or "embeddings"
    deployment: str | None  # Azure routes only

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def prompt_text(self) -> str:
        """Every message's content joined, to look for the turns in the prompt."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)


def chat_completion_body(content: str | None, *, finish_reason: str = "stop", model: str = "gpt-4o-2024-08-06") -> dict:
    """A chat completion as Azure OpenAI returns it (with its content-filter annotations)."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "logprobs": None,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "content_filter_results": {},
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


def chat_reply(content: str | None, *, finish_reason: str = "stop", **kwargs: Any) -> Reply:
    """A successful chat completion whose first choice says ``content``."""
    return Reply(json=chat_completion_body(content, finish_reason=finish_reason), **kwargs)


def embeddings_body(vectors: list[list[float]], *, model: str = "text-embedding-3-small") -> dict:
    """An embeddings answer in index order."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": 4 * len(vectors), "total_tokens": 4 * len(vectors)},
    }


def embeddings_reply(vectors: list[list[float]], **kwargs: Any) -> Reply:
    """A successful embeddings answer with exactly these vectors."""
    return Reply(json=embeddings_body(vectors), **kwargs)


def error_body(status: int, code: str | None = None, message: str | None = None) -> dict:
    """An error body in the services' shape."""
    return {
        "error": {
            "code": code or str(status),
            "message": message or f"Fake error {status}",
            "param": None,
            "type": None,
        }
    }


def error_reply(
    status: int,
    *,
    code: str | None = None,
    message: str | None = None,
    retry_after: str | None = "0",
    retry_after_ms: str | None = "5",
    **kwargs: Any,
) -> Reply:
    """An error answer; by default with ``Retry-After: 0`` and ``retry-after-ms: 5`` so that SDK retries are quick."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    if retry_after_ms is not None:
        headers["retry-after-ms"] = retry_after_ms
    if status == 429 and message is None:
        message = (
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded call rate limit "
            "of your current OpenAI S0 pricing tier. Please retry after 1 second."
        )
    return Reply(status=status, json=error_body(status, code, message), headers=headers, **kwargs)


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic, non-normalised vector for a text (what the server answers when nothing is scripted)."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 10.0 for b in digest)
        counter += 1
    return values[:dimensions]


class FakeOpenAIServer:
    """The fake service on a free 127.0.0.1 port; use as an async context manager."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        bearer_token: str | None = None,
        default_dimensions: int = 8,
        reverse_embedding_order: bool = True,
    ) -> None:
        self.api_key = api_key
        self.bearer_token = bearer_token
        self.default_dimensions = default_dimensions
        self.reverse_embedding_order = reverse_embedding_order
        self.requests: list[SeenRequest] = []
        self._queue: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # scripting

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next requests (of any route) with these replies, in order."""
        self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        return len(self._queue)

    def requests_to(self, route: str) -> list[SeenRequest]:
        """The recorded requests of one route ("chat" or "embeddings")."""
        return [r for r in self.requests if r.route == route]

    # addresses

    @property
    def url(self) -> str:
        """The Azure endpoint (``AZURE_OPENAI_ENDPOINT``)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI-compatible base URL (``OPENAI_BASE_URL``)."""
        return f"{self.url}/v1"

    # lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._azure_embeddings)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/embeddings", self._openai_embeddings)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        self._port = int(address[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # handlers

    async def _azure_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, route="chat", azure=True)

    async def _azure_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, route="embeddings", azure=True)

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, route="chat", azure=False)

    async def _openai_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, route="embeddings", azure=False)

    async def _handle(self, request: web.Request, *, route: str, azure: bool) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        seen = SeenRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            route=route,
            deployment=request.match_info.get("deployment") if azure else None,
        )
        self.requests.append(seen)
        if azure and "api-version" not in seen.query:
            return web.json_response(error_body(404, "404", "Resource not found"), status=404)
        if not self._authorised(seen, azure=azure):
            return web.json_response(
                error_body(
                    401,
                    "401",
                    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                    "valid key for an active subscription and use a correct regional API endpoint for your resource.",
                ),
                status=401,
            )
        if not isinstance(body, dict):
            return web.json_response(error_body(400, "invalid_request_error", "Invalid JSON body"), status=400)
        reply = self._queue.popleft() if self._queue else self._default(route, body)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        headers = {"x-request-id": uuid.uuid4().hex, **reply.headers}
        if reply.text is not None:
            return web.Response(status=reply.status, text=reply.text, headers=headers, content_type="text/plain")
        return web.json_response(reply.json, status=reply.status, headers=headers)

    def _authorised(self, seen: SeenRequest, *, azure: bool) -> bool:
        if self.api_key is None and self.bearer_token is None:
            return True
        authorization = seen.headers.get("authorization", "")
        if self.bearer_token is not None and authorization == f"Bearer {self.bearer_token}":
            return True
        if self.api_key is not None:
            if azure and seen.headers.get("api-key") == self.api_key:
                return True
            if not azure and authorization == f"Bearer {self.api_key}":
                return True
        return False

    def _default(self, route: str, body: dict[str, Any]) -> Reply:
        if route == "chat":
            return chat_reply(DEFAULT_CHAT_ANSWER)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        model = str(body.get("model", ""))
        dimensions = int(body.get("dimensions") or NATIVE_DIMENSIONS.get(model, self.default_dimensions))
        data: list[dict[str, Any]] = []
        for index, text in enumerate(texts):
            vector = fake_vector(str(text), dimensions)
            embedding: Any = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        if self.reverse_embedding_order:
            data.reverse()
        usage = {"prompt_tokens": 4 * len(texts), "total_tokens": 4 * len(texts)}
        return Reply(json={"object": "list", "data": data, "model": model, "usage": usage})
