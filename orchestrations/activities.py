"""Activities: each validates its input model, calls one ``MemoryService`` operation and returns JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import azure.durable_functions as df
from opentelemetry.trace import SpanKind

from memory_core import telemetry
from memory_core.runtime import get_service
from memory_core.session import SessionSnapshot
from orchestrations import names
from orchestrations.payloads import BatchJob, CompactJob, EvictJob, ReflectJob
from orchestrations.tracing import carrier_of

bp = df.Blueprint()

_R = TypeVar("_R")


def traced_activity(name: str) -> Callable[[Callable[[dict[str, Any]], Awaitable[_R]]], Callable[..., Awaitable[_R]]]:
    """Run an activity in a span ``activity {name}``, continuing the trace its input carries."""

    def decorate(body: Callable[[dict[str, Any]], Awaitable[_R]]) -> Callable[..., Awaitable[_R]]:
        async def run(job: dict[str, Any]) -> _R:
            attrs = {"durable.activity.name": name}
            with (
                telemetry.remote_parent(carrier_of(job), override=True),
                telemetry.span(f"activity {name}", SpanKind.CONSUMER, attrs),
            ):
                return await body(job)

        # Not functools.wraps: the worker binds the function's own parameters (``job``).
        run.__name__, run.__qualname__, run.__doc__ = body.__name__, body.__qualname__, body.__doc__
        return run

    return decorate


def _dump(snapshot: SessionSnapshot | None) -> dict[str, Any] | None:
    return None if snapshot is None else snapshot.model_dump(mode="json")


@bp.activity_trigger(input_name="job", activity=names.INDEX_ACTIVITY)
@traced_activity(names.INDEX_ACTIVITY)
async def index_turns(job: dict[str, Any]) -> dict[str, Any] | None:
    """Add vectors to the batch's stored turns; return the session's snapshot for its entity (None: gone)."""
    batch = BatchJob.model_validate(job)
    service = await get_service()
    return _dump(await service.index_turns(batch.user_id, batch.session_id, batch.through_seq))


@bp.activity_trigger(input_name="job", activity=names.COMPACT_ACTIVITY)
@traced_activity(names.COMPACT_ACTIVITY)
async def compact_chunk(job: dict[str, Any]) -> dict[str, Any]:
    """Write the claimed chunk and fold it into the cumulative summary."""
    compact = CompactJob.model_validate(job)
    service = await get_service()
    return (await service.compact(compact.claim, compact.now)).model_dump(mode="json")


@bp.activity_trigger(input_name="job", activity=names.EVICT_ACTIVITY)
@traced_activity(names.EVICT_ACTIVITY)
async def evict(job: dict[str, Any]) -> bool:
    """Index the session's last turns and mark it idle if nothing happened after the cutoff."""
    eviction = EvictJob.model_validate(job)
    service = await get_service()
    return await service.evict(eviction.user_id, eviction.session_id, eviction.cutoff)


@bp.activity_trigger(input_name="job", activity=names.REFLECT_ACTIVITY)
@traced_activity(names.REFLECT_ACTIVITY)
async def reflect(job: dict[str, Any]) -> dict[str, Any]:
    """Summarise the session and consolidate its insights."""
    reflection = ReflectJob.model_validate(job)
    service = await get_service()
    outcome = await service.reflect(reflection.user_id, reflection.session_id, reflection.now)
    return outcome.model_dump(mode="json")
