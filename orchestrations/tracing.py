"""Traces through Durable work: orchestrations, activities and entity operations continue the caller's trace.

The trace context rides the payloads (``payloads.Traced.trace``, W3C ``traceparent``/``tracestate``): the request
that starts an orchestration puts its own there, the orchestration hands its children one that names the
orchestration's span as their parent. An orchestrator is replayed, so its span is emitted once, when it finishes and
is not replaying, with the orchestration's start time and a span id derived from its instance id: the id its
activities were given before it existed (``observability.fixed_span_id``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from datetime import datetime
from typing import Any

import azure.durable_functions as df
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

import observability

Orchestration = Generator[Any, Any, Any]
Carrier = dict[str, str] | None

_tracer = trace.get_tracer("orchestrations")


def carrier_of(data: Any) -> Carrier:
    """The ``trace`` of a payload (a dict), if it has a usable one."""
    found = data.get("trace") if isinstance(data, dict) else None
    if isinstance(found, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        return found
    return None


def orchestration_span_id(instance_id: str) -> int:
    """The span id of an orchestration: 64 bits of its instance id's digest (never 0)."""
    return int.from_bytes(hashlib.sha256(instance_id.encode()).digest()[:8], "big") or 1


def child_carrier(instance_id: str, carrier: Carrier) -> Carrier:
    """The trace context an orchestration gives its activities and entity operations: its own span as parent."""
    if not carrier:
        return None
    parent = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    if not parent.is_valid:
        return None
    span_id = orchestration_span_id(instance_id)
    child = {"traceparent": f"00-{parent.trace_id:032x}-{span_id:016x}-{int(parent.trace_flags):02x}"}
    if carrier.get("tracestate"):
        child["tracestate"] = carrier["tracestate"]
    return child


def _emit(name: str, instance_id: str, carrier: Carrier, started: datetime, error: BaseException | None) -> None:
    parent = propagate.extract(carrier or {})
    with observability.fixed_span_id(orchestration_span_id(instance_id)):
        span = _tracer.start_span(
            f"orchestration {name}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes={"durable.orchestration.name": name, "durable.instance.id": instance_id},
            start_time=int(started.timestamp() * 1e9),
        )
    if error is not None:
        span.set_attribute("error.type", type(error).__qualname__)
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def traced_orchestrator(
    name: str,
) -> Callable[[Callable[[df.DurableOrchestrationContext, Carrier], Orchestration]], Callable[..., Orchestration]]:
    """Run an orchestrator with the trace context for its children, and emit its span once it finishes."""

    def decorate(
        body: Callable[[df.DurableOrchestrationContext, Carrier], Orchestration],
    ) -> Callable[..., Orchestration]:
        def run(context: df.DurableOrchestrationContext) -> Orchestration:
            carrier = carrier_of(context.get_input())
            child = child_carrier(context.instance_id, carrier)
            started = context.current_utc_datetime
            try:
                result = yield from body(context, child)
            except Exception as exc:
                if child and not context.is_replaying:
                    _emit(name, context.instance_id, carrier, started, exc)
                raise
            if child and not context.is_replaying:
                _emit(name, context.instance_id, carrier, started, None)
            return result

        # Not functools.wraps: the worker reads the parameters of the function itself (``context`` only).
        run.__name__, run.__qualname__, run.__doc__ = body.__name__, body.__qualname__, body.__doc__
        return run

    return decorate
