"""The orchestrators: ingest one turn, reflect on an ended session, evict an idle one.

Orchestrators are replayed, so they only yield Durable tasks, take time from ``context.current_utc_datetime``, and
log only when not replaying. Every side effect is an activity with a retry policy; every write is an idempotent
upsert, so a retried or replayed step writes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
from pydantic import BaseModel

from memory_core.pool import PoolEntry
from memory_core.session import Compaction, SessionState, TurnInput
from orchestrations import names
from orchestrations.entities import AppendReply

logger = logging.getLogger(__name__)

bp = df.Blueprint()

# Activities talk to the store and the models: retry transient failures for about half a minute.
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=5)

Orchestration = Generator[Any, Any, Any]


class SessionRef(BaseModel):
    """Which session a job is about."""

    user_id: str
    session_id: str


class IngestJob(SessionRef):
    """Input of the ingest orchestration."""

    turn: TurnInput


class EvictJob(SessionRef):
    """Input of the eviction orchestration: evict if nothing happened after ``cutoff`` (ISO time)."""

    cutoff: str


def _touch(context: df.DurableOrchestrationContext, ref: SessionRef, entry: PoolEntry) -> None:
    context.signal_entity(
        names.pool_entity(),
        names.TOUCH,
        {"key": names.session_key(ref.user_id, ref.session_id), "entry": entry.model_dump(mode="json")},
    )


def _leave_pool(context: df.DurableOrchestrationContext, ref: SessionRef) -> None:
    context.signal_entity(names.pool_entity(), names.REMOVE, {"key": names.session_key(ref.user_id, ref.session_id)})


@bp.orchestration_trigger(context_name="context", orchestration=names.INGEST_ORCHESTRATOR)
def ingest_turn(context: df.DurableOrchestrationContext) -> Orchestration:
    """Append a turn through the session entity, persist it with its embedding, and compact when a chunk is due."""
    job = IngestJob.model_validate(context.get_input())
    entity = names.session_entity(job.user_id, job.session_id)
    turn = job.turn.model_dump(mode="json")
    reply = AppendReply.model_validate((yield context.call_entity(entity, names.APPEND, turn)))
    if reply.missing:  # evicted (or never loaded): rebuild the hot state from the store, then append
        state = yield context.call_activity_with_retry(names.LOAD_SESSION_ACTIVITY, RETRY, job.model_dump(mode="json"))
        yield context.call_entity(entity, names.LOAD, state)
        reply = AppendReply.model_validate((yield context.call_entity(entity, names.APPEND, turn)))
    if reply.result is None:
        if not context.is_replaying:
            logger.warning(
                "Turn %s refused: session %s/%s has ended (instance %s)",
                job.turn.turn_id,
                job.user_id,
                job.session_id,
                context.instance_id,
            )
        return {"status": "refused", "reason": "the session has ended", "turn_id": job.turn.turn_id}

    result = reply.result
    seen = job.turn.received_at or job.turn.timestamp
    entry = PoolEntry(
        user_id=job.user_id, session_id=job.session_id, started_at=seen, last_activity=seen, turn_count=result.seq
    )
    if not result.duplicate and result.turn is not None:
        _touch(context, job, entry)
        yield context.call_activity_with_retry(names.PERSIST_TURN_ACTIVITY, RETRY, result.turn.model_dump(mode="json"))
        _touch(context, job, entry.model_copy(update={"persisted_through": result.seq}))

    compaction = result.compaction
    while compaction is not None:
        try:
            summary = yield context.call_activity_with_retry(
                names.COMPACT_ACTIVITY,
                RETRY,
                {"compaction": compaction.model_dump(mode="json"), "now": context.current_utc_datetime.isoformat()},
            )
        except Exception:
            # Give the chunk back so a later turn claims it again; the turns themselves are already stored.
            yield context.call_entity(entity, names.RELEASE_CLAIM)
            raise
        following = yield context.call_entity(
            entity,
            names.APPLY_COMPACTION,
            {"index": compaction.index, "through_seq": compaction.through_seq, "summary": summary},
        )
        compaction = Compaction.model_validate(following) if following else None
    return {
        "status": "duplicate" if result.duplicate else "stored",
        "turn_id": job.turn.turn_id,
        "seq": result.seq,
    }


@bp.orchestration_trigger(context_name="context", orchestration=names.REFLECTION_ORCHESTRATOR)
def reflect_session(context: df.DurableOrchestrationContext) -> Orchestration:
    """End the session, write what is hot to the store, summarise, extract and consolidate insights, then unload."""
    job = SessionRef.model_validate(context.get_input())
    entity = names.session_entity(job.user_id, job.session_id)
    now = context.current_utc_datetime.isoformat()
    state = yield context.call_entity(entity, names.END, {"now": now})
    yield context.call_activity_with_retry(
        names.SAVE_SESSION_ACTIVITY, RETRY, {**job.model_dump(), "state": state, "status": "ended"}
    )
    outcome = yield context.call_activity_with_retry(names.REFLECT_ACTIVITY, RETRY, {**job.model_dump(), "now": now})
    yield context.call_entity(entity, names.DELETE)
    _leave_pool(context, job)
    if not context.is_replaying:
        logger.info(
            "Reflection of %s/%s done (instance %s): %d insights added, %d updated, %d superseded",
            job.user_id,
            job.session_id,
            context.instance_id,
            len(outcome["insights_added"]),
            len(outcome["insights_updated"]),
            len(outcome["insights_superseded"]),
        )
    return outcome


@bp.orchestration_trigger(context_name="context", orchestration=names.EVICTION_ORCHESTRATOR)
def evict_session(context: df.DurableOrchestrationContext) -> Orchestration:
    """Move an idle session out of the hot pool: save it (restorable), then unload it unless a turn came meanwhile."""
    job = EvictJob.model_validate(context.get_input())
    entity = names.session_entity(job.user_id, job.session_id)
    check = yield context.call_entity(entity, names.EVICT, {"cutoff": job.cutoff})
    if check is None:  # not hot any more
        _leave_pool(context, job)
        return {"evicted": False, "reason": "not hot"}
    state = SessionState.model_validate(check["state"])
    if not check["idle"] or state.status == "ended":
        # Active after all (the pool's view was behind): correct the pool and keep the session.
        _touch(
            context,
            job,
            PoolEntry(
                user_id=job.user_id,
                session_id=job.session_id,
                started_at=state.started_at,
                last_activity=state.last_activity,
                turn_count=state.turn_count,
            ),
        )
        return {"evicted": False, "reason": "active" if state.status != "ended" else "ending"}
    yield context.call_activity_with_retry(
        names.SAVE_SESSION_ACTIVITY,
        RETRY,
        {**job.model_dump(exclude={"cutoff"}), "state": check["state"], "status": "idle"},
    )
    unloaded = yield context.call_entity(entity, names.DELETE_IF_UNCHANGED, {"turn_count": state.turn_count})
    if unloaded:
        _leave_pool(context, job)
        if not context.is_replaying:
            age = (context.current_utc_datetime - state.last_activity).total_seconds()
            logger.info("Evicted stale session: %s/%s (age: %.0fs)", job.user_id, job.session_id, age)
    return {"evicted": bool(unloaded), "turn_count": state.turn_count}
