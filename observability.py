"""The OpenTelemetry SDK of the Functions app: where the spans and metrics of ``memory_core.telemetry`` go.

``configure()`` runs once per process, from ``function_app.py``:

* ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set (Azure; the Bicep sets it) and the Azure Monitor distro installed:
  ``configure_azure_monitor()``, traces and metrics to Application Insights.
* otherwise ``OTEL_EXPORTER_OTLP_ENDPOINT`` set: OTLP over HTTP (protobuf) to that collector.
* otherwise ``OTEL_TRACES_EXPORTER=console`` (``make run`` sets it unless told otherwise): spans one line each, and
  metrics every ``OTEL_METRIC_EXPORT_INTERVAL`` ms when ``OTEL_METRICS_EXPORTER=console``.
* otherwise nothing: the API stays a no-op.

Orchestrator spans are emitted when an orchestration finishes, with a span id derived from its instance id, so the
activities it started (whose inputs carry that id as their parent) hang under it (``fixed_span_id``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

logger = logging.getLogger(__name__)

SERVICE_NAME = "agent-memory-service"
_configured: list[str] = []
_fixed_span_id: ContextVar[int | None] = ContextVar("fixed_span_id", default=None)


class _IdGenerator(RandomIdGenerator):
    """Random ids, except the span id a ``fixed_span_id`` block asks for."""

    def generate_span_id(self) -> int:
        fixed = _fixed_span_id.get()
        return fixed if fixed is not None else super().generate_span_id()


@contextmanager
def fixed_span_id(span_id: int) -> Iterator[None]:
    """The span started in this block gets ``span_id`` (an orchestration's, derived from its instance id)."""
    token = _fixed_span_id.set(span_id)
    try:
        yield
    finally:
        _fixed_span_id.reset(token)


def tracer_provider(processors: Sequence[SpanProcessor]) -> TracerProvider:
    """The app's tracer provider: its resource, the id generator orchestrations need, ``processors``."""
    name = os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({"service.name": name}), id_generator=_IdGenerator())
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def configure() -> str:
    """Set up the exporters the environment asks for, once per process; returns which (``none`` for none)."""
    if _configured:
        return _configured[0]
    mode = _configure()
    _configured.append(mode)
    return mode


def _configure() -> str:
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
        except ImportError:
            logger.warning("APPLICATIONINSIGHTS_CONNECTION_STRING is set but azure-monitor-opentelemetry is missing")
        else:
            configure_azure_monitor(logger_name="memory_core", **_azure_credential())
            return "azure_monitor"
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        _install([BatchSpanProcessor(OTLPSpanExporter())], [PeriodicExportingMetricReader(OTLPMetricExporter())])
        return "otlp"
    if os.environ.get("OTEL_TRACES_EXPORTER", "").lower() == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        readers: list[MetricReader] = []
        if os.environ.get("OTEL_METRICS_EXPORTER", "").lower() == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        # Batched, one short line a span: the SDK's default printer (indented JSON of every span, on the thread that
        # ends it) made a store slower under make run; this one costs it nothing measurable (README, Observability).
        _install([BatchSpanProcessor(ConsoleSpanExporter(formatter=span_line))], readers)
        return "console"
    return "none"


def span_line(span: ReadableSpan) -> str:
    """A span as one console line: trace and span ids, parent, name, duration and status."""
    context, parent = span.context, span.parent
    took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    status = span.status.status_code.name if span.status else "UNSET"
    return (
        f"span {context.trace_id:032x} {context.span_id:016x} <- {parent.span_id:016x} "
        if parent
        else f"span {context.trace_id:032x} {context.span_id:016x} <- root "
    ) + f"{span.name} {took:.2f}ms {status}\n"


def _azure_credential() -> dict[str, object]:
    """Entra ID for Application Insights when the app has a managed identity (the Bicep disables local auth)."""
    client_id = os.environ.get("AZURE_CLIENT_ID")
    if not client_id:
        return {}
    from azure.identity import ManagedIdentityCredential

    return {"credential": ManagedIdentityCredential(client_id=client_id)}


def _install(processors: Sequence[SpanProcessor], readers: Sequence[MetricReader]) -> None:
    trace.set_tracer_provider(tracer_provider(processors))
    if readers:
        name = os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
        metrics.set_meter_provider(
            MeterProvider(resource=Resource.create({"service.name": name}), metric_readers=readers)
        )
