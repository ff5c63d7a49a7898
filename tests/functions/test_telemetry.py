"""The span tree of one store and one reflection, client to store and model, in the SDK's in-memory exporter.

The Python client calls the app's HTTP functions through an ``httpx`` transport (``Api``); orchestrations run to
their end on the local task hub (devhost's durable back end, in this process). Tracers and instruments are the
test's own providers (patched in), so no other test sees a span or a trace context.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import observability
from memory_client import client as client_module
from memory_client.client import MemoryServiceClient
from memory_core import telemetry
from memory_core.service import MemoryService
from orchestrations import tracing
from tests.functions.api_client import Api, http_request

USER, SESSION = "alice", "s1"
SECRET = "my secret hiking plan"
INSTRUMENTS = {
    "REQUEST_DURATION": ("histogram", "http.server.request.duration"),
    "TURNS_STORED": ("counter", "memory.turns.stored"),
    "RETRIEVALS": ("counter", "memory.retrievals"),
    "RETRIEVED_ITEMS": ("histogram", "memory.retrieve.items"),
    "REFLECTION_DURATION": ("histogram", "memory.reflection.duration"),
    "MODEL_CALLS": ("counter", "memory.model.calls"),
    "MODEL_DURATION": ("histogram", "gen_ai.client.operation.duration"),
    "TOKEN_USAGE": ("histogram", "gen_ai.client.token.usage"),
    "HOT_SESSIONS": ("gauge", "memory.sessions.hot"),
}


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = observability.tracer_provider([SimpleSpanProcessor(exporter)])
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer(telemetry.SCOPE))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("orchestrations"))
    monkeypatch.setattr(
        client_module, "_otel_trace", SimpleNamespace(get_tracer=provider.get_tracer, SpanKind=SpanKind)
    )
    return exporter


@pytest.fixture
def metric_reader(monkeypatch: pytest.MonkeyPatch) -> InMemoryMetricReader:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    for attribute, (kind, name) in INSTRUMENTS.items():
        monkeypatch.setattr(telemetry, attribute, getattr(meter, f"create_{kind}")(name))
    return reader


ROUTES = {"/sessions/start": "start_session", "/memory/store": "store_turn", "/sessions/end": "end_session"}


def client_over(api: Api) -> MemoryServiceClient:
    """The Python client, its HTTP calls answered by the app's functions."""

    async def handle(request: httpx.Request) -> httpx.Response:
        name = ROUTES[request.url.path]
        body = json.loads(request.content) if request.content else None
        headers = {key: value for key, value in request.headers.items() if key.lower() == "traceparent"}
        reply = await api.send(name, http_request(request.method, api.route_of(name), body, headers=headers))
        return httpx.Response(reply.status, text=reply.text, headers={"Content-Type": "application/json"})

    return MemoryServiceClient("http://memory.test", USER, transport=httpx.MockTransport(handle), max_attempts=1)


def tree(exported: tuple[ReadableSpan, ...]) -> dict[str | None, list[str]]:
    """Children's names by parent's name; the roots under None."""
    by_id = {span.context.span_id: span for span in exported}
    children: dict[str | None, list[str]] = {}
    for span in exported:
        parent = by_id.get(span.parent.span_id) if span.parent else None
        children.setdefault(parent.name if parent else None, []).append(span.name)
    return children


def ancestry(exported: tuple[ReadableSpan, ...], name: str) -> list[str]:
    """The names from the first span called ``name`` up to its root."""
    by_id = {span.context.span_id: span for span in exported}
    span: ReadableSpan | None = next(s for s in exported if s.name == name)
    names = []
    while span is not None:
        names.append(span.name)
        span = by_id.get(span.parent.span_id) if span.parent else None
    return names


def metric_names(reader: InMemoryMetricReader) -> set[str]:
    """The names of the metrics the reader has collected."""
    data = reader.get_metrics_data()
    return {metric.name for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics}


def no_text(exported: tuple[ReadableSpan, ...]) -> None:
    for span in exported:
        for value in (span.attributes or {}).values():
            assert "hiking" not in str(value), (span.name, value)


async def test_one_store_is_one_trace_from_the_client_to_the_store(
    running_api: Api, spans: InMemorySpanExporter, metric_reader: InMemoryMetricReader
) -> None:
    async with client_over(running_api) as client:
        await client.start_session(SESSION)
        spans.clear()
        await client.store_turn(f"I love {SECRET}", "Noted", session_id=SESSION)
    exported = spans.get_finished_spans()
    assert len({span.context.trace_id for span in exported}) == 1
    assert ancestry(exported, "append_turn sqlite") == [
        "append_turn sqlite",
        "memory.store",
        "POST /memory/store",  # the function's (SERVER)
        "POST /memory/store",  # the client's (CLIENT), the root
    ]
    root = next(s for s in exported if s.parent is None)
    assert root.kind is SpanKind.CLIENT
    children = tree(exported)
    server = next(s for s in exported if s.kind is SpanKind.SERVER)
    assert server.attributes is not None and server.attributes["http.route"] == "/memory/store"
    use_case = next(s for s in exported if s.name == "memory.store")
    assert use_case.attributes is not None
    assert use_case.attributes["gen_ai.operation.name"] == "create_memory"
    assert "user.id" not in use_case.attributes and "gen_ai.conversation.id" not in use_case.attributes
    assert "append_turn sqlite" in children["memory.store"]
    no_text(exported)
    names = metric_names(metric_reader)
    assert {"http.server.request.duration", "memory.turns.stored"} <= names


async def test_a_batch_and_a_reflection_continue_the_trace_through_orchestrations_activities_and_entities(
    running_api: Api, spans: InMemorySpanExporter, metric_reader: InMemoryMetricReader
) -> None:
    async with client_over(running_api) as client:
        await client.start_session(SESSION)
        for n in range(4):  # K=2, L=2: turn 4 starts a batch that indexes and compacts
            await client.store_turn(f"{SECRET} {n}", "Noted", session_id=SESSION)
        spans.clear()
        await client.end_session(SESSION)
    exported = spans.get_finished_spans()
    assert len({span.context.trace_id for span in exported}) == 1
    chain = ancestry(exported, "chat local-extractive")
    assert chain == [
        "chat local-extractive",
        "memory.reflect",
        "activity reflect",
        "orchestration reflect_session",
        "start_orchestration reflect_session",
        "memory.end",
        "POST /sessions/end",
        "POST /sessions/end",
    ]
    children = tree(exported)
    assert children["orchestration reflect_session"] == [
        "activity index_turns",
        "activity reflect",
        "entity session.finish",
    ]
    assert "get_turns sqlite" in children["memory.reflect"]
    assert "put_summary sqlite" in children["memory.reflect"]
    chat = next(s for s in exported if s.name == "chat local-extractive")
    assert chat.kind is SpanKind.CLIENT and chat.attributes is not None
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    no_text(exported)
    names = metric_names(metric_reader)
    assert {"memory.reflection.duration", "memory.model.calls", "gen_ai.client.operation.duration"} <= names


async def test_ids_are_attributes_only_when_the_operator_allows_it(
    running_api: Api, spans: InMemorySpanExporter, service: MemoryService
) -> None:
    service.settings = service.settings.model_copy(update={"TELEMETRY_RECORD_IDS": True})
    async with client_over(running_api) as client:
        await client.start_session(SESSION)
    use_case = next(s for s in spans.get_finished_spans() if s.name == "memory.start")
    assert use_case.attributes is not None
    assert use_case.attributes["user.id"] == USER
    assert use_case.attributes["gen_ai.conversation.id"] == SESSION
