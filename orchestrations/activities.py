"""Activities: each takes its input model, calls one ``MemoryService`` operation and returns its result's JSON.

``traced_activity`` validates the JSON the worker hands over into the activity's model (``orchestrations.payloads``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import azure.durable_functions as df
from opentelemetry.trace import SpanKind
from pydantic import BaseModel

from memory_core import telemetry
from memory_core.runtime import get_service
from memory_core.service import ReflectionOutcome
from memory_core.session import CompactionDone, SessionSnapshot
from orchestrations import names
from orchestrations.payloads import BatchJob, CompactJob, EvictJob, ReflectJob, Traced
from orchestrations.tracing import carrier_of

bp = df.Blueprint()

_J = TypeVar("_J", bound=Traced)
# What an activity returns: a result model (sent as its JSON dump), a bool, or None.
Result = BaseModel | bool | None


def traced_activity(
    name: str, payload: type[_J]
) -> Callable[[Callable[[_J], Awaitable[Result]]], Callable[..., Awaitable[Any]]]:
    """Run an activity on its input model, in a span ``activity {name}`` of the input's trace; send its result's JSON.

    The function the worker registers takes the JSON the SDK decodes (``job``) and validates it into ``payload``
    before the activity runs; a result model goes back as its JSON dump.
    """

    def decorate(body: Callable[[_J], Awaitable[Result]]) -> Callable[..., Awaitable[Any]]:
        async def run(job: dict[str, Any]) -> Any:
            attrs = {"durable.activity.name": name}
            # The trace is read before the input is validated, so that a malformed input's failure is in its trace.
            with (
                telemetry.remote_parent(carrier_of(job), override=True),
                telemetry.span(f"activity {name}", SpanKind.CONSUMER, attrs),
            ):
                result = await body(payload.model_validate(job))
            return result.model_dump(mode="json") if isinstance(result, BaseModel) else result

        # Not functools.wraps: the worker binds the function's own parameters (``job``).
        run.__name__, run.__qualname__, run.__doc__ = body.__name__, body.__qualname__, body.__doc__
        return run

    return decorate


@bp.activity_trigger(input_name="job", activity=names.INDEX_ACTIVITY)
@traced_activity(names.INDEX_ACTIVITY, BatchJob)
async def index_turns(batch: BatchJob) -> SessionSnapshot | None:
    """Add vectors to the batch's stored turns; return the session's snapshot for its entity (None: gone)."""
    service = await get_service()
    return await service.index_turns(batch.user_id, batch.session_id, batch.through_seq)


@bp.activity_trigger(input_name="job", activity=names.COMPACT_ACTIVITY)
@traced_activity(names.COMPACT_ACTIVITY, CompactJob)
async def compact_chunk(compact: CompactJob) -> CompactionDone:
    """Write the claimed chunk and fold it into the cumulative summary."""
    service = await get_service()
    return await service.compact(compact.claim, compact.now)


@bp.activity_trigger(input_name="job", activity=names.EVICT_ACTIVITY)
@traced_activity(names.EVICT_ACTIVITY, EvictJob)
async def evict(eviction: EvictJob) -> bool:
    """Index the session's last turns and mark it idle if nothing happened after the cutoff."""
    service = await get_service()
    return await service.evict(eviction.user_id, eviction.session_id, eviction.cutoff)


@bp.activity_trigger(input_name="job", activity=names.REFLECT_ACTIVITY)
@traced_activity(names.REFLECT_ACTIVITY, ReflectJob)
async def reflect(reflection: ReflectJob) -> ReflectionOutcome:
    """Summarise the session and consolidate its insights."""
    service = await get_service()
    return await service.reflect(reflection.user_id, reflection.session_id, reflection.now)
