"""Traces and metrics of the memory service, through the OpenTelemetry API only.

This is the one module of ``memory_core`` that imports OpenTelemetry, and it imports the API alone: without an SDK
configured (``observability.configure`` in the host), every span and instrument here is a no-op. Spans are named and
attributed after the GenAI semantic conventions where they apply (``gen_ai.operation.name``: ``create_memory``,
``search_memory``, ``delete_memory``, ``chat``, ``embeddings``; ``gen_ai.memory.*``, ``gen_ai.usage.*``). User and
session ids become attributes (``user.id``, ``gen_ai.conversation.id``) only with ``TELEMETRY_RECORD_IDS``; no
message, summary, insight or query text ever does.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

# What ``span`` and ``use_case`` return: a context manager that gives the span.
SpanScope = AbstractContextManager[Span]

SCOPE = "memory_core"
PROVIDER = "agent-memory-service"

_tracer = trace.get_tracer(SCOPE)
_meter = metrics.get_meter(SCOPE)

# The GenAI memory operation of each use case (semantic conventions, development status); the others have none.
MEMORY_OPERATIONS = {
    "store": "create_memory",
    "context": "search_memory",
    "retrieve": "search_memory",
    "insights": "search_memory",
    "summaries": "search_memory",
    "forget": "delete_memory",
    "reflect": "update_memory",
}

# -- metrics ------------------------------------------------------------------------------------------------------
REQUEST_DURATION = _meter.create_histogram(
    "http.server.request.duration", unit="s", description="Duration of HTTP requests, per route"
)
TURNS_STORED = _meter.create_counter("memory.turns.stored", unit="{turn}", description="Turns stored")
RETRIEVALS = _meter.create_counter("memory.retrievals", unit="{request}", description="Searches of a user's memory")
RETRIEVED_ITEMS = _meter.create_histogram("memory.retrieve.items", unit="{item}", description="Items a search returned")
REFLECTION_DURATION = _meter.create_histogram(
    "memory.reflection.duration", unit="s", description="Duration of reflecting on one ended session"
)
MODEL_CALLS = _meter.create_counter("memory.model.calls", unit="{call}", description="Chat and embedding calls")
MODEL_DURATION = _meter.create_histogram(
    "gen_ai.client.operation.duration", unit="s", description="Duration of chat and embedding calls"
)
TOKEN_USAGE = _meter.create_histogram(
    "gen_ai.client.token.usage", unit="{token}", description="Tokens of chat and embedding calls, as reported"
)
HOT_SESSIONS = _meter.create_gauge("memory.sessions.hot", unit="{session}", description="Active sessions")


# -- spans --------------------------------------------------------------------------------------------------------
@contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A span around a block: an exception ends it with error status and ``error.type`` (no message text)."""
    with _tracer.start_as_current_span(
        name, kind=kind, attributes=dict(attributes or {}), record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            mark_error(current, exc)
            raise


def mark_error(current: Span, exc: BaseException) -> None:
    """Error status and ``error.type``: the exception's class, never its message (it may quote user text)."""
    current.set_attribute("error.type", type(exc).__qualname__)
    current.set_status(Status(StatusCode.ERROR))


def id_attributes(record_ids: bool, user_id: str | None, session_id: str | None) -> dict[str, str]:
    """The user and session ids as attributes, only when the operator allows it (``TELEMETRY_RECORD_IDS``)."""
    if not record_ids:
        return {}
    found = {"user.id": user_id, "gen_ai.conversation.id": session_id}
    return {name: value for name, value in found.items() if value}


@contextmanager
def use_case(
    name: str,
    *,
    record_ids: bool = False,
    user_id: str | None = None,
    session_id: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """The span of one use case (``memory.store``...), with its GenAI memory operation where one applies."""
    attrs: dict[str, Any] = {"memory.use_case": name, "gen_ai.provider.name": PROVIDER}
    operation = MEMORY_OPERATIONS.get(name)
    if operation:
        attrs["gen_ai.operation.name"] = operation
    attrs.update(id_attributes(record_ids, user_id, session_id))
    attrs.update(attributes or {})
    with span(f"memory.{name}", attributes=attrs) as current:
        yield current


# -- context propagation (W3C traceparent) -------------------------------------------------------------------------
def inject() -> dict[str, str] | None:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``), or None outside a trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def has_current_span() -> bool:
    """Whether a recorded or remote span is current (a host that traced the invocation, or an enclosing span)."""
    return trace.get_current_span().get_span_context().is_valid


@contextmanager
def remote_parent(carrier: Mapping[str, str] | None, *, override: bool = False) -> Iterator[None]:
    """Make the trace context of ``carrier`` (W3C headers) current, unless a span is current already.

    A host that traces HTTP invocations itself (Azure Functions' worker with OpenTelemetry on) sets the context
    first; otherwise the caller's ``traceparent`` continues the trace. ``override``: the carrier wins (a Durable
    payload's ``trace`` names the orchestration that scheduled the work, the most precise parent there is).
    """
    if not carrier or (has_current_span() and not override):
        yield
        return
    token = otel_context.attach(propagate.extract({name.lower(): value for name, value in carrier.items()}))
    try:
        yield
    finally:
        otel_context.detach(token)


# -- model calls --------------------------------------------------------------------------------------------------
def record_usage(operation: str, model: str, input_tokens: int | None, output_tokens: int | None = None) -> None:
    """Token usage a model reported: on the current span (``gen_ai.usage.*``) and the token-usage histogram."""
    current = trace.get_current_span()
    attrs = {"gen_ai.operation.name": operation, "gen_ai.request.model": model}
    for token_type, count in (("input", input_tokens), ("output", output_tokens)):
        if count is None:
            continue
        current.set_attribute(f"gen_ai.usage.{token_type}_tokens", count)
        TOKEN_USAGE.record(count, {**attrs, "gen_ai.token.type": token_type})


def provider_of(setting: str) -> str:
    """``gen_ai.provider.name`` of an ``LLM_PROVIDER``/``EMBEDDINGS_PROVIDER`` value or a ``provider:model`` name."""
    return {"azure_openai": "azure.ai.openai", "openai": "openai"}.get(setting.partition(":")[0], "local")


_R = TypeVar("_R")


async def model_call(
    operation: str,
    model: str,
    task: str,
    call: Callable[[], Awaitable[_R]],
    attributes: Mapping[str, Any] | None = None,
    provider: str = "local",
) -> _R:
    """One chat or embedding call in a CLIENT span ``{operation} {model}``, counted and timed."""
    attrs = {"gen_ai.operation.name": operation, "gen_ai.provider.name": provider, "gen_ai.request.model": model}
    started = time.perf_counter()
    outcome: dict[str, Any] = {}
    try:
        with span(f"{operation} {model}", SpanKind.CLIENT, {**attrs, "memory.model.task": task, **(attributes or {})}):
            return await call()
    except BaseException as exc:
        outcome["error.type"] = type(exc).__qualname__
        raise
    finally:
        MODEL_CALLS.add(1, {**attrs, "memory.model.task": task, **outcome})
        MODEL_DURATION.record(time.perf_counter() - started, {**attrs, **outcome})


class TracedChatModel:
    """A ``ChatModel`` whose calls are ``chat`` spans and model-call metrics; everything else passes through."""

    TASKS = ("summarize", "summarize_session", "extract_insights")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.name: str = inner.name

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in self.TASKS:
            return attribute

        @functools.wraps(attribute)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            call = functools.partial(attribute, *args, **kwargs)
            return await model_call("chat", self.name, name, call, provider=provider_of(self.name))

        return traced


class TracedEmbedder:
    """An ``Embedder`` whose ``embed`` calls are ``embeddings`` spans and model-call metrics."""

    def __init__(self, inner: Any, provider: str) -> None:
        self._inner = inner
        self._provider = provider_of(provider)
        self.model: str = inner.model
        self.dimensions: int = inner.dimensions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def embed(self, texts: Any) -> list[list[float]]:
        """The inner embedder's vectors, in an ``embeddings`` span (the count of texts, never the texts)."""
        count = {"memory.embeddings.texts": len(texts)}
        call = functools.partial(self._inner.embed, texts)
        result = await model_call("embeddings", self.model, "embed", call, count, self._provider)
        return cast(list[list[float]], result)


class TracedStore:
    """A ``Store`` whose calls are CLIENT spans ``{db.system.name} {method}`` (``db.operation.name``), no values."""

    def __init__(self, inner: Any, system: str) -> None:
        self._inner = inner
        self._system = system

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute

        @functools.wraps(attribute)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            attrs = {"db.system.name": self._system, "db.operation.name": name}
            with span(f"{name} {self._system}", SpanKind.CLIENT, attrs):
                return await attribute(*args, **kwargs)

        return traced
