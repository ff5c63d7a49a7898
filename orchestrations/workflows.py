"""The orchestrators: a batch of turns' background work, a session's reflection, an idle session's eviction.

Orchestrators are replayed, so they only yield Durable tasks, take time from ``context.current_utc_datetime``, and
log only when not replaying. Every side effect is an activity with a retry policy; every write is idempotent, so a
retried or replayed step writes nothing twice. None of them is on a request's path: requests read and write the
store and start these.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
from pydantic import StrictBool, TypeAdapter

from memory_core.domain import SessionStatus
from memory_core.service import ReflectionOutcome
from memory_core.session import Claim, CompactionDone, SessionSnapshot
from orchestrations import names
from orchestrations.payloads import (
    ApplyCompactionOperation,
    BatchJob,
    BatchOutcome,
    CompactJob,
    EvictionOutcome,
    EvictJob,
    FinishOperation,
    ReflectJob,
    SessionRef,
    SyncOperation,
)
from orchestrations.tracing import Carrier, traced_orchestrator

logger = logging.getLogger(__name__)

bp = df.Blueprint()

# Activities talk to the store and the models: retry transient failures for about half a minute.
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=5)

Orchestration = Generator[Any, Any, Any]

# The evict activity's result: whether it marked the session idle.
_EVICTED = TypeAdapter(StrictBool)


@bp.orchestration_trigger(context_name="context", orchestration=names.BATCH_ORCHESTRATOR)
@traced_orchestrator(names.BATCH_ORCHESTRATOR)
def process_turns(context: df.DurableOrchestrationContext, trace: Carrier) -> Orchestration:
    """Index a batch of stored turns, then compact the chunks that are due, in order."""
    job = BatchJob.model_validate(context.get_input()).model_copy(update={"trace": trace})
    outcome = yield from _index_and_compact(context, job)
    return outcome.model_dump(mode="json")


def _index_and_compact(context: df.DurableOrchestrationContext, job: BatchJob) -> Orchestration:
    """Index the session's turns up to the job's end, then compact the chunks the session entity hands out.

    The entity claims the next due chunks (up to ``MAX_CHUNKS_PER_CLAIM`` at once) for one orchestration at a time,
    so chunks fold into the cumulative summary in order even when batches overlap. Returns a ``BatchOutcome``.
    """
    indexed = yield context.call_activity_with_retry(names.INDEX_ACTIVITY, RETRY, job.model_dump(mode="json"))
    outcome = BatchOutcome(user_id=job.user_id, session_id=job.session_id)
    if indexed is None:
        return outcome.model_copy(update={"skipped": "the session is gone"})
    snapshot = SessionSnapshot.model_validate(indexed)
    outcome = outcome.model_copy(update={"indexed_through": snapshot.indexed_through})
    if snapshot.status is SessionStatus.ENDED:
        return outcome.model_copy(update={"skipped": "the session has ended"})
    entity = names.session_entity(job.user_id, job.session_id)
    sync = SyncOperation(**dict(snapshot), trace=job.trace)
    claimed = yield context.call_entity(entity, names.SYNC, sync.model_dump(mode="json"))
    compacted = 0
    while claimed is not None:
        claim = Claim.model_validate(claimed)
        compact = CompactJob(claim=claim, now=context.current_utc_datetime, trace=job.trace)
        try:
            done = yield context.call_activity_with_retry(
                names.COMPACT_ACTIVITY, RETRY, compact.model_dump(mode="json")
            )
        except Exception:
            # Give the chunk back so that a later batch claims it again; the turns themselves are stored.
            yield context.call_entity(entity, names.RELEASE_CLAIM)
            raise
        compacted += claim.chunks
        applied = ApplyCompactionOperation(**dict(CompactionDone.model_validate(done)), trace=job.trace)
        claimed = yield context.call_entity(entity, names.APPLY_COMPACTION, applied.model_dump(mode="json"))
    return outcome.model_copy(update={"chunks_compacted": compacted})


@bp.orchestration_trigger(context_name="context", orchestration=names.REFLECTION_ORCHESTRATOR)
@traced_orchestrator(names.REFLECTION_ORCHESTRATOR)
def reflect_session(context: df.DurableOrchestrationContext, trace: Carrier) -> Orchestration:
    """Index the ended session's last turns, summarise it, extract and consolidate insights, then finish its entity.

    The session was marked ended in the store before this started, so every turn it will ever have is stored.
    """
    job = SessionRef.model_validate(context.get_input())
    now = context.current_utc_datetime
    batch = BatchJob(user_id=job.user_id, session_id=job.session_id, trace=trace)
    yield context.call_activity_with_retry(names.INDEX_ACTIVITY, RETRY, batch.model_dump(mode="json"))
    reflect = ReflectJob(user_id=job.user_id, session_id=job.session_id, now=now, trace=trace)
    raw = yield context.call_activity_with_retry(names.REFLECT_ACTIVITY, RETRY, reflect.model_dump(mode="json"))
    outcome = ReflectionOutcome.model_validate(raw)
    finish = FinishOperation(user_id=job.user_id, session_id=job.session_id, now=now, trace=trace)
    context.signal_entity(
        names.session_entity(job.user_id, job.session_id), names.FINISH, finish.model_dump(mode="json")
    )
    if not context.is_replaying:
        logger.info(
            "Reflection of %s/%s done (instance %s): %d insights added, %d updated, %d superseded",
            job.user_id,
            job.session_id,
            context.instance_id,
            len(outcome.insights_added),
            len(outcome.insights_updated),
            len(outcome.insights_superseded),
        )
    return outcome.model_dump(mode="json")


@bp.orchestration_trigger(context_name="context", orchestration=names.EVICTION_ORCHESTRATOR)
@traced_orchestrator(names.EVICTION_ORCHESTRATOR)
def evict_session(context: df.DurableOrchestrationContext, trace: Carrier) -> Orchestration:
    """Move an idle session out of the hot pool: index and compact, mark it idle (restorable), unload its entity.

    A turn stored meanwhile keeps it hot (the store's conditional update refuses the eviction), and one stored after
    it simply makes the session active again: nothing is lost either way, the turns are in the store.
    """
    job = EvictJob.model_validate(context.get_input()).model_copy(update={"trace": trace})
    yield from _index_and_compact(context, BatchJob(user_id=job.user_id, session_id=job.session_id, trace=trace))
    result = yield context.call_activity_with_retry(names.EVICT_ACTIVITY, RETRY, job.model_dump(mode="json"))
    outcome = EvictionOutcome(evicted=_EVICTED.validate_python(result))
    if outcome.evicted:
        context.signal_entity(names.session_entity(job.user_id, job.session_id), names.DELETE)
    return outcome.model_dump(mode="json")
