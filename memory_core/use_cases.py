"""The service's use cases, one per endpoint: what each request does, independent of the host.

Every function takes the shared ``MemoryService`` (store and engines), the ``SessionHost`` (hot state and
background work) and a validated request, and returns a response model or raises a ``MemoryServiceError``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from memory_core import pool as pool_rules
from memory_core import session as rules
from memory_core import telemetry
from memory_core.config import Settings
from memory_core.domain import SessionRecord, SessionStatus
from memory_core.errors import NotFoundError
from memory_core.models import (
    ContextRequest,
    ContextResponse,
    EndSessionRequest,
    EndSessionResponse,
    ForgetPending,
    ForgetResponse,
    HealthResponse,
    InsightsRequest,
    InsightsResponse,
    ReflectionStatusRequest,
    ReflectionStatusResponse,
    RetrieveRequest,
    RetrieveResponse,
    StartSessionRequest,
    StatsResponse,
    StoreTurnRequest,
    StoreTurnResponse,
    SummariesRequest,
    SummariesResponse,
    UserSessions,
    UsersResponse,
)
from memory_core.ports import ForgetProgress, SessionHost, UserDeletion, UserExport
from memory_core.service import MemoryService
from memory_core.session import TurnInput

logger = logging.getLogger(__name__)

# A session whose background work stayed a whole batch behind this long (its start was lost, or it failed) is
# started again by the cleanup timer; so is the reflection of a session ended this long ago that never started.
BACKGROUND_GRACE = timedelta(minutes=2)
# Sessions the cleanup timer acts on per run, for each of its sweeps (the rest wait for the next run).
CLEANUP_BATCH = 500
# How long DELETE /users/{id} keeps at stopping and purging the user's background work before it answers with what is
# still pending (the cleanup timer's follow-up finishes it).
FORGET_WAIT_SECONDS = 15.0
# Pending forgets the cleanup timer carries on per run, and how old one must be: younger, its DELETE may still be at it.
FORGET_BATCH = 20
FOLLOW_UP_AFTER = timedelta(seconds=FORGET_WAIT_SECONDS + 5)


def _now() -> datetime:
    return datetime.now(UTC)


def _span(service: MemoryService, name: str, user_id: str, session_id: str | None = None) -> telemetry.SpanScope:
    """The span of a use case; user and session ids only with ``TELEMETRY_RECORD_IDS``."""
    record_ids = service.settings.TELEMETRY_RECORD_IDS
    return telemetry.use_case(name, record_ids=record_ids, user_id=user_id, session_id=session_id)


def _lag(settings: Settings) -> int:
    """Unindexed turns that mean a session missed a batch (``/stats``' dirty sessions, the timer's restarts)."""
    return rules.batch_lag(settings.K_TURN_BUFFER, settings.L_TURN_CHUNKS)


async def start_session(service: MemoryService, request: StartSessionRequest) -> ContextResponse:
    """Start a new session, or continue an existing one (``restore``), and return its context."""
    with _span(service, "start", request.user_id, request.session_id) as current:
        context = await _start_session(service, request)
        current.set_attribute("memory.restored", context.restored)
        return context


async def _start_session(service: MemoryService, request: StartSessionRequest) -> ContextResponse:
    record, restored = await service.start_session(request.user_id, request.session_id, request.restore, _now())
    if not restored and record.turn_count == 0:
        logger.info("Started session %s/%s", record.user_id, record.session_id)
    return await service.context(record, restored)


async def get_context(service: MemoryService, request: ContextRequest) -> ContextResponse:
    """The session's current context: every turn stored before this request is in it."""
    with _span(service, "context", request.user_id, request.session_id):
        record, restored = await service.open_session(request.user_id, request.session_id, _now())
        return await service.context(record, restored, request.after_turn_id)


async def store_turn(service: MemoryService, host: SessionHost, request: StoreTurnRequest) -> StoreTurnResponse:
    """Store one turn; when it makes a chunk due, start the background work of the turns so far."""
    with _span(service, "store", request.user_id, request.session_id) as current:
        current.set_attribute("gen_ai.memory.store.id", "turns")
        response = await _store_turn(service, host, request)
        current.set_attribute("memory.turn.seq", response.seq)
        current.set_attribute("memory.turn.duplicate", response.duplicate)
    telemetry.TURNS_STORED.add(1, {"memory.turn.duplicate": response.duplicate})
    return response


async def _store_turn(service: MemoryService, host: SessionHost, request: StoreTurnRequest) -> StoreTurnResponse:
    turn = TurnInput(
        turn_id=request.turn_id or uuid.uuid4().hex,
        user_message=request.user_message,
        agent_message=request.agent_message,
        timestamp=request.timestamp,
        metadata=request.metadata,
    )
    outcome = await service.append_turn(request.user_id, request.session_id, turn, _now())
    seq, settings = outcome.turn.seq, service.settings
    if not outcome.duplicate and rules.batch_due(seq, settings.K_TURN_BUFFER, settings.L_TURN_CHUNKS):
        try:
            await host.start_batch(request.user_id, request.session_id, seq)
        except Exception:
            # The turn is stored and stays acknowledged; the cleanup timer starts the batch it finds behind.
            logger.warning(
                "Could not start the background work of %s/%s through turn %d; the cleanup timer will",
                request.user_id,
                request.session_id,
                seq,
                exc_info=True,
            )
    return StoreTurnResponse(
        user_id=request.user_id,
        session_id=request.session_id,
        turn_id=outcome.turn.turn_id,
        seq=seq,
        duplicate=outcome.duplicate,
    )


async def retrieve(service: MemoryService, request: RetrieveRequest) -> RetrieveResponse:
    """Hybrid search over the user's memory, filtered; with ``max_tokens``, the best items that fit it."""
    return await service.retrieve(request)


async def insights(service: MemoryService, request: InsightsRequest) -> InsightsResponse:
    """The user's long-term insights."""
    return await service.insights(request)


async def summaries(service: MemoryService, request: SummariesRequest) -> SummariesResponse:
    """The user's session summaries, newest first."""
    return await service.summaries(request)


async def end_session(service: MemoryService, host: SessionHost, request: EndSessionRequest) -> EndSessionResponse:
    """End the session (no turn is accepted from now on) and start its reflection (or return the one started)."""
    with _span(service, "end", request.user_id, request.session_id):
        await service.end_session(request.user_id, request.session_id, _now())
        handle = await host.start_reflection(request.user_id, request.session_id)
    logger.info("Ending session %s/%s: reflection %s", request.user_id, request.session_id, handle.instance_id)
    return EndSessionResponse(user_id=request.user_id, session_id=request.session_id, id=handle.instance_id)


FAILED_OUTPUT = "The reflection failed; end the session again to retry it (the service's log says why)"


async def reflection_status(host: SessionHost, request: ReflectionStatusRequest) -> ReflectionStatusResponse:
    """Where the session's reflection is: that session's only (its instance id derives from user and session)."""
    state = await host.reflection_state(request.user_id, request.session_id)
    if state is None:
        raise NotFoundError("No reflection was started for this session", field="session_id")
    output = state.output
    if state.runtime_status == "Failed":
        # Durable's output of a failed instance is the error text, which may name internals: logged, not returned.
        logger.warning("Reflection %s failed: %s", state.instance_id, output)
        output = FAILED_OUTPUT
    return ReflectionStatusResponse(
        name=state.name,
        instanceId=state.instance_id,
        runtimeStatus=state.runtime_status,
        output=output,
        createdTime=state.created,
        lastUpdatedTime=state.updated,
    )


async def stats(service: MemoryService) -> StatsResponse:
    """The hot pool as the store's session records show it now."""
    settings = service.settings
    figures = await service.store.session_figures(SessionStatus.ACTIVE, lagging_by=_lag(settings))
    pool = pool_rules.stats(figures, _now(), timedelta(minutes=settings.SESSION_TTL_MINUTES), settings.MAX_SESSIONS)
    telemetry.HOT_SESSIONS.set(figures.count)
    return StatsResponse.model_validate(pool.model_dump())


async def forget_user(
    service: MemoryService, host: SessionHost, user_id: str, wait_seconds: float = FORGET_WAIT_SECONDS
) -> ForgetResponse:
    """Delete everything of a user: every stored document, hot sessions and background-work histories.

    1. The store records the pending forget: from then on it refuses the user's session starts and turns
       (``UserForgettingError``), checked when each is written.
    2. The store deletes the user's session records, then everything else: an append in flight fails, and background
       work writes nothing more (its writes are guarded by the session record it started from).
    3. The host stops the user's running orchestrations, deletes their session entities and purges every history,
       finding them by the user's prefix (entities too, whether or not the store still listed their sessions).
    4. When nothing of the user is left, the pending forget is removed and the user may come back; otherwise the
       answer says what is pending and the cleanup timer carries on (``cleanup``) until nothing is.
    """
    with _span(service, "forget", user_id) as current:
        began = await service.store.begin_forget(user_id, _now())
        sessions = await service.store.list_sessions(user_id, limit=None)  # every one of them
        deleted, progress = await _forget_pass(service, host, user_id, [s.session_id for s in sessions], wait_seconds)
        current.set_attribute("memory.forget.complete", progress.complete)
    if not progress.complete:
        logger.info(
            "Forget of %s pending: %d instances and %d entities left; the cleanup timer carries on",
            user_id,
            progress.instances_pending,
            progress.entities_pending,
        )
    return ForgetResponse(
        user_id=user_id,
        **deleted.model_dump(),
        histories_purged=progress.instances_purged,
        entities_deleted=progress.entities_deleted,
        complete=progress.complete,
        pending=ForgetPending(instances=progress.instances_pending, entities=progress.entities_pending),
        began_at=began,
    )


async def continue_forgets(
    service: MemoryService, host: SessionHost, now: datetime | None = None, limit: int = FORGET_BATCH
) -> int:
    """Carry on the pending forgets once: sweep the store again, stop and purge what is left in the host.

    A forget younger than ``FOLLOW_UP_AFTER`` is left to its DELETE, which may still be at it. Returns how many
    forgets were completed now; a failure of one leaves it pending for the next run.
    """
    now = now or _now()
    completed = 0
    for pending in await service.store.pending_forgets(limit):
        if now - pending.began_at < FOLLOW_UP_AFTER:
            continue
        user_id = pending.user_id
        try:
            deleted, progress = await _forget_pass(service, host, user_id)
            if progress.complete:
                completed += 1
                logger.info("Forget of %s (begun %s) is complete", user_id, pending.began_at.isoformat())
            else:
                logger.info(
                    "Forget of %s still pending: %d instances and %d entities left (store swept: %s)",
                    user_id,
                    progress.instances_pending,
                    progress.entities_pending,
                    deleted.model_dump(),
                )
        except Exception:
            logger.warning("Could not carry on the forget of %s; the next cleanup will", user_id, exc_info=True)
    return completed


async def _forget_pass(
    service: MemoryService,
    host: SessionHost,
    user_id: str,
    session_ids: Sequence[str] = (),
    wait_seconds: float = 0.0,
) -> tuple[UserDeletion, ForgetProgress]:
    """One pass of a forget: sweep the store, then the host; when nothing is left, the forget is complete."""
    deleted = await service.forget(user_id)
    progress = await host.forget(user_id, session_ids, wait_seconds=wait_seconds)
    if progress.complete:
        await service.store.finish_forget(user_id)
    return deleted, progress


async def export_user(service: MemoryService, user_id: str) -> UserExport:
    """Everything stored about a user."""
    return await service.export(user_id)


# Sessions the inspector lists (``GET /inspector/users``): the most recently active, across users.
INSPECTOR_SESSIONS = 500


async def list_users(service: MemoryService, limit: int = INSPECTOR_SESSIONS) -> UsersResponse:
    """The users of the most recently active sessions, each with those sessions, newest first (an admin listing)."""
    records = await service.store.recent_sessions(limit + 1)
    listed = records[:limit]
    users: dict[str, list[SessionRecord]] = {}
    for record in listed:
        users.setdefault(record.user_id, []).append(record)
    return UsersResponse(
        users=[UserSessions(user_id=u, last_activity=s[0].last_activity, sessions=s) for u, s in users.items()],
        sessions=len(listed),
        truncated=len(records) > limit,
    )


async def health(service: MemoryService) -> HealthResponse:
    """What the service runs on."""
    embedder = service.embedder
    return HealthResponse(
        status="healthy",
        store=service.settings.STORE,
        llm=service.chat.name,
        embeddings=f"{embedder.model} ({embedder.dimensions} dims)" if embedder else "none (full-text search only)",
    )


async def cleanup(service: MemoryService, host: SessionHost, now: datetime | None = None) -> int:
    """Evict idle sessions, restart stalled work, purge old histories and carry on the pending forgets.

    Evicts the sessions idle longer than the TTL and the least recently used beyond capacity. Runs at most once per
    ``EVICTION_INTERVAL_SECONDS`` across all instances, whatever the timer's schedule; returns how many evictions it
    started.
    """
    settings, store = service.settings, service.store
    now = now or _now()
    if not await store.claim_cleanup(now, settings.EVICTION_INTERVAL_SECONDS):
        return 0
    ttl = timedelta(minutes=settings.SESSION_TTL_MINUTES)
    evictions = await _evictions(service, now - ttl)
    for record in evictions:
        # Beyond capacity a session is evicted even if recent: its last activity as seen now is the cutoff.
        await host.start_eviction(record.user_id, record.session_id, max(now - ttl, record.last_activity))
    stalled = await store.scan_sessions(
        SessionStatus.ACTIVE,
        idle_before=now - BACKGROUND_GRACE,
        lagging_by=_lag(settings),
        limit=CLEANUP_BATCH,
    )
    for record in stalled:
        # The batch of the first turn not indexed: indexing it lets the watermark take in what was done beyond it.
        through = rules.next_batch_end(record.indexed_through + 1, settings.K_TURN_BUFFER, settings.L_TURN_CHUNKS)
        await host.start_batch(record.user_id, record.session_id, through)
    unreflected = await store.scan_sessions(
        SessionStatus.ENDED, idle_before=now - BACKGROUND_GRACE, unreflected=True, limit=CLEANUP_BATCH
    )
    restarted = 0
    for record in unreflected:
        if not await host.reflection_started(record.user_id, record.session_id):
            await host.start_reflection(record.user_id, record.session_id)
            restarted += 1
    purged = await host.purge_finished(now - timedelta(days=settings.HISTORY_RETENTION_DAYS))
    await continue_forgets(service, host, now)
    if evictions or stalled or restarted or purged:
        logger.info(
            "Cleanup: %d sessions to evict, %d with background work restarted, %d reflections started, "
            "%d histories purged",
            len(evictions),
            len(stalled),
            restarted,
            purged,
        )
    return len(evictions)


async def _evictions(service: MemoryService, idle_before: datetime) -> list[SessionRecord]:
    """Hot sessions idle since before ``idle_before``, then the least recently used beyond ``MAX_SESSIONS``."""
    store, limit = service.store, service.settings.MAX_SESSIONS
    stale = await store.scan_sessions(SessionStatus.ACTIVE, idle_before=idle_before, limit=CLEANUP_BATCH)
    figures = await store.session_figures(SessionStatus.ACTIVE, lagging_by=_lag(service.settings))
    telemetry.HOT_SESSIONS.set(figures.count)
    overflow = min(figures.count - len(stale) - limit, CLEANUP_BATCH)
    if overflow <= 0:
        return stale
    # The oldest are the stale ones (least recently active first), then the overflow.
    oldest = await store.scan_sessions(SessionStatus.ACTIVE, limit=len(stale) + overflow)
    return oldest
