"""Retries, backoff, Retry-After, keys and typed errors, against ``httpx.MockTransport`` (no service needed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from memory_client import (
    InvalidRequest,
    MemoryServiceClient,
    ReflectionTimeout,
    ServerError,
    ServiceUnavailable,
    SessionEnded,
    SessionNotFound,
    Unauthorized,
)

BASE = "http://memory.test"
CONTEXT = {
    "session_id": "s1",
    "user_id": "u1",
    "active_context": [],
    "cumulative_summary": "",
    "insights": [],
    "session_summaries": [],
    "formatted_context": "ctx",
    "restored": False,
    "turn_count": 0,
}
UNAVAILABLE = {"error": "UpstreamUnavailableError", "detail": "store unavailable", "field": None}


class Script:
    """A MockTransport handler answering from a list of steps (a response, an exception, or a callable)."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(request)
        return step

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.content]


def client_for(script: Script, **options: Any) -> tuple[MemoryServiceClient, list[float]]:
    """A client on the scripted transport whose waits are recorded instead of slept."""
    options = {"session_id": "s1", **options}
    client = MemoryServiceClient(BASE, "u1", transport=httpx.MockTransport(script), **options)
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    client._sleep = no_sleep  # type: ignore[method-assign]
    return client, waits


def ok(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def accepted(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    stored = {"status": "stored", "user_id": "u1", "session_id": "s1", "turn_id": body["turn_id"], "seq": 1}
    return ok({**stored, "duplicate": False}, 201)


async def test_503_is_retried_honouring_retry_after() -> None:
    script = Script(ok(UNAVAILABLE, 503, {"Retry-After": "2"}), ok(CONTEXT))
    client, waits = client_for(script)
    async with client:
        assert (await client.get_context())["formatted_context"] == "ctx"
    assert len(script.requests) == 2 and waits == [2.0]


async def test_retry_after_as_an_http_date_and_capped() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    script = Script(
        ok(UNAVAILABLE, 503, {"Retry-After": later}), ok(UNAVAILABLE, 503, {"Retry-After": "3600"}), ok(CONTEXT)
    )
    client, waits = client_for(script, max_retry_after=10)
    async with client:
        await client.get_context()
    assert 1.5 < waits[0] <= 3.0 and waits[1] == 10


async def test_connection_refused_then_success() -> None:
    script = Script(httpx.ConnectError("Connection refused"), httpx.ConnectError("Connection refused"), ok(CONTEXT))
    client, waits = client_for(script, backoff=0.1, max_backoff=1)
    async with client:
        assert (await client.get_context())["formatted_context"] == "ctx"
    assert len(script.requests) == 3
    # exponential backoff with jitter: base 0.1 then 0.2, each scaled by 0.5-1.0
    assert 0.05 <= waits[0] <= 0.1 and 0.1 <= waits[1] <= 0.2
    assert not client.degraded


async def test_attempts_are_bounded_then_service_unavailable() -> None:
    script = Script(ok(UNAVAILABLE, 503, {"Retry-After": "1"}))
    client, waits = client_for(script, max_attempts=3, degrade=False)
    async with client:
        with pytest.raises(ServiceUnavailable) as failed:
            await client.get_context()
    assert len(script.requests) == 3 and waits == [1.0, 1.0]
    assert failed.value.status == 503 and failed.value.error == "UpstreamUnavailableError"
    assert failed.value.detail.startswith("store unavailable")


async def test_a_real_refused_connection_without_degradation(closed_url: str) -> None:
    async with MemoryServiceClient(closed_url, "u1", degrade=False, max_attempts=2, backoff=0.01) as client:
        with pytest.raises(ServiceUnavailable) as failed:
            await client.start_session()
    assert failed.value.status is None and failed.value.error == "ConnectError"
    assert "after 2 attempts" in str(failed.value)


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (400, {"error": "ValidationError", "detail": "top_k: must be at most 50", "field": "top_k"}, InvalidRequest),
        (401, {"error": "Unauthorized", "detail": "key required", "field": None}, Unauthorized),
        (404, {"error": "SessionNotFoundError", "detail": "Session not found", "field": "session_id"}, SessionNotFound),
        (409, {"error": "SessionEndedError", "detail": "Session has ended", "field": "session_id"}, SessionEnded),
    ],
)
async def test_client_errors_are_not_retried(status: int, body: dict[str, Any], error_class: type[Exception]) -> None:
    script = Script(ok(body, status))
    client, waits = client_for(script)
    async with client:
        with pytest.raises(error_class) as failed:
            await client.retrieve("q")
    assert len(script.requests) == 1 and waits == []
    assert failed.value.status == status  # type: ignore[attr-defined]
    assert failed.value.error == body["error"] and failed.value.field == body["field"]  # type: ignore[attr-defined]


async def test_server_failures_are_retried_then_raised_not_degraded() -> None:
    failed = {"error": "InternalError", "detail": "The service failed to handle the request", "field": None}
    script = Script(ok(failed, 500), accepted)  # e.g. a race in the host on a repeated turn id: the retry works
    client, waits = client_for(script)
    async with client:
        assert (await client.store_turn("hello", "hi"))["status"] == "stored"
    assert len(script.requests) == 2 and len(waits) == 1

    script = Script(ok(failed, 500))
    client, _ = client_for(script, max_attempts=2)
    async with client:
        with pytest.raises(ServerError) as error:
            await client.store_turn("hello", "hi")
        assert error.value.status == 500 and error.value.error == "InternalError"
        assert client.pending_turns == 0  # the service answered: not a reason to buffer
    # a gateway's 502/504 means the service is unreachable: degraded like a refused connection
    script = Script(httpx.Response(502, text="Bad Gateway"))
    client, _ = client_for(script, max_attempts=2)
    async with client:
        assert (await client.store_turn("hello", "hi"))["status"] == "buffered"
        assert isinstance(client.last_error, ServiceUnavailable) and client.last_error.status == 502


async def test_a_store_whose_answer_was_lost_is_resent_with_the_same_turn_id() -> None:
    script = Script(httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("connection reset"), accepted)
    client, _ = client_for(script)
    async with client:
        result = await client.store_turn("hello", "hi")
    assert result["status"] == "stored"
    turn_ids = {body["turn_id"] for body in script.bodies()}
    assert turn_ids == {result["turn_id"]} and len(script.requests) == 3


async def test_the_context_names_the_last_stored_turn_and_is_retried_on_503() -> None:
    # a 503 (Retry-After) on the context is retried with the same after_turn_id
    script = Script(
        accepted,
        ok(
            {"error": "UpstreamUnavailableError", "detail": "Cosmos DB query failed (status 503)", "field": None},
            503,
            {"Retry-After": "1"},
        ),
        ok({**CONTEXT, "turn_count": 1}),
    )
    client, waits = client_for(script)
    async with client:
        stored = await client.store_turn("hello", "hi", turn_id="t-1")
        assert stored["turn_id"] == "t-1"
        assert (await client.get_context())["turn_count"] == 1
    assert [b.get("after_turn_id") for b in script.bodies()[1:]] == ["t-1", "t-1"] and waits == [1.0]


async def test_keys_function_key_admin_key_and_status_urls() -> None:
    seen: list[tuple[str, str | None]] = []

    def record(answer: Callable[[httpx.Request], httpx.Response]) -> Callable[[httpx.Request], httpx.Response]:
        def handler(request: httpx.Request) -> httpx.Response:
            seen.append((request.url.path, request.headers.get("x-functions-key")))
            return answer(request)

        return handler

    done = {"runtimeStatus": "Completed", "output": {}}
    script = Script(
        record(lambda r: ok(CONTEXT)),
        record(lambda r: ok({"user_id": "u1", "sessions": []})),
        record(lambda r: ok(done)),
        record(lambda r: ok(done)),
    )
    client, _ = client_for(script, api_key="function-key", admin_key="master-key")
    async with client:
        await client.get_context()
        await client.export_user()
        await client.wait_for_reflection(f"{BASE}/runtime/webhooks/durabletask/instances/x?taskHub=h")
        await client.wait_for_reflection(f"{BASE}/runtime/webhooks/durabletask/instances/y?taskHub=h&code=system")
    assert seen == [
        ("/memory/context", "function-key"),
        ("/users", "master-key"),
        ("/runtime/webhooks/durabletask/instances/x", "function-key"),
        ("/runtime/webhooks/durabletask/instances/y", None),  # the URL carries its own key
    ]


async def test_wait_for_reflection_polls_until_final_or_times_out() -> None:
    running = ok({"runtimeStatus": "Running"}, 202)
    script = Script(running, running, ok({"runtimeStatus": "Completed", "output": {"summary": "s"}}))
    client, waits = client_for(script)
    handle: Any = {"id": "x", "statusQueryGetUri": f"{BASE}/status/x"}
    async with client:
        status = await client.wait_for_reflection(handle, timeout=30, poll_interval=0.5)
        assert status["runtimeStatus"] == "Completed" and waits == [0.5, 0.5]

    script = Script(running)
    client, _ = client_for(script)
    async with client:
        client._sleep = asyncio.sleep  # type: ignore[method-assign]
        with pytest.raises(ReflectionTimeout) as late:
            await client.wait_for_reflection(handle, timeout=0.2, poll_interval=0.05)
    assert late.value.body == {"runtimeStatus": "Running"}
    with pytest.raises(ValueError, match="statusQueryGetUri"):
        await client.wait_for_reflection({"id": "x"})  # type: ignore[typeddict-item]


async def test_a_generated_session_id_makes_start_safe_to_retry() -> None:
    taken = {"error": "ConflictError", "detail": "A session with this id already exists", "field": "session_id"}

    def started(request: httpx.Request) -> httpx.Response:
        return ok({**CONTEXT, "session_id": json.loads(request.content)["session_id"]})

    # the first attempt created the session but its answer was lost; the retry is told the id is taken
    script = Script(httpx.ReadError("reset"), ok(taken, 409), started)
    client, _ = client_for(script, session_id=None)
    async with client:
        context = await client.start_session()
    bodies = script.bodies()
    assert len({b["session_id"] for b in bodies}) == 1  # one client-generated id throughout
    assert [b["restore"] for b in bodies] == [False, False, True]
    assert context["session_id"] == bodies[0]["session_id"] == client.session_id
