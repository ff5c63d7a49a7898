"""The service's use cases, one per endpoint: what each request does, independent of the host.

Every function takes the shared ``MemoryService`` (store and engines), the ``SessionHost`` (hot state and
background work) and a validated request, and returns a response model or raises a ``MemoryServiceError``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

from memory_core import pool as pool_rules
from memory_core.domain import SessionStatus
from memory_core.errors import SessionEndedError, SessionNotFoundError, UpstreamUnavailableError
from memory_core.models import (
    ContextRequest,
    ContextResponse,
    EndSessionRequest,
    EndSessionResponse,
    ForgetResponse,
    HealthResponse,
    StartSessionRequest,
    StatsResponse,
    StoreTurnRequest,
    StoreTurnResponse,
)
from memory_core.ports import SessionHost, UserExport
from memory_core.service import MemoryService
from memory_core.session import SessionState, TurnInput

logger = logging.getLogger(__name__)

# How often a read-your-writes wait looks at the session again.
_WAIT_POLL_SECONDS = 0.05


def _now() -> datetime:
    return datetime.now(UTC)


async def _hot_or_restored(service: MemoryService, host: SessionHost, user_id: str, session_id: str) -> SessionState:
    """The session's hot state; an evicted session is restored from the store first. Ended: "Session not found"."""
    started = time.perf_counter()
    state = await host.read(user_id, session_id)
    if state is not None:
        if state.status == "ended":
            raise SessionNotFoundError(user_id, session_id)
        logger.info("✓ Hot session: %s/%s (%.0fms)", user_id, session_id, (time.perf_counter() - started) * 1000)
        return state
    state = await service.open_session(user_id, session_id, restore=True, now=_now())
    await host.hold(state)
    return state


async def start_session(service: MemoryService, host: SessionHost, request: StartSessionRequest) -> ContextResponse:
    """Start a new session, or continue an existing one (``restore``), and return its context."""
    if request.session_id is not None and request.restore:
        state = await _hot_or_restored(service, host, request.user_id, request.session_id)
    else:
        # A hot session always has its store record, so a taken id is refused by open_session.
        state = await service.open_session(request.user_id, request.session_id, restore=False, now=_now())
        await host.hold(state)
        logger.info("Started session %s/%s", state.user_id, state.session_id)
    return await service.context(state)


async def get_context(service: MemoryService, host: SessionHost, request: ContextRequest) -> ContextResponse:
    """The session's current context; with ``after_turn_id``, once that turn is in the session."""
    state = await _hot_or_restored(service, host, request.user_id, request.session_id)
    if request.after_turn_id is not None and request.after_turn_id not in state.turn_ids:
        state = await _wait_for_turn(service, host, state, request.after_turn_id)
    return await service.context(state)


async def _wait_for_turn(service: MemoryService, host: SessionHost, state: SessionState, turn_id: str) -> SessionState:
    deadline = time.monotonic() + service.settings.CONTEXT_WAIT_SECONDS
    while time.monotonic() < deadline:
        await asyncio.sleep(_WAIT_POLL_SECONDS)
        latest = await host.read(state.user_id, state.session_id)
        if latest is not None:
            state = latest
            if turn_id in state.turn_ids:
                return state
    logger.warning(
        "Turn %s of %s/%s not in the session after %.1fs",
        turn_id,
        state.user_id,
        state.session_id,
        service.settings.CONTEXT_WAIT_SECONDS,
    )
    raise UpstreamUnavailableError(
        f"Turn {turn_id!r} was accepted but is not in the session yet; retry shortly", field="after_turn_id"
    )


async def store_turn(service: MemoryService, host: SessionHost, request: StoreTurnRequest) -> StoreTurnResponse:
    """Durably accept a turn for the session (202); it is appended, persisted and compacted in the background."""
    state = await host.read(request.user_id, request.session_id)
    if state is not None and state.status == "ended":
        raise SessionEndedError(request.user_id, request.session_id)
    if state is None:
        record = await service.store.get_session(request.user_id, request.session_id)
        if record is None:
            raise SessionNotFoundError(request.user_id, request.session_id)
        if record.status is SessionStatus.ENDED:
            raise SessionEndedError(request.user_id, request.session_id)
    now = _now()
    turn = TurnInput(
        turn_id=request.turn_id or uuid.uuid4().hex,
        user_message=request.user_message,
        agent_message=request.agent_message,
        timestamp=request.timestamp or now,
        metadata=request.metadata,
        received_at=now,
    )
    await host.submit_turn(request.user_id, request.session_id, turn)
    return StoreTurnResponse(user_id=request.user_id, session_id=request.session_id, turn_id=turn.turn_id)


async def end_session(service: MemoryService, host: SessionHost, request: EndSessionRequest) -> EndSessionResponse:
    """End the session and start its reflection (or return the one already started)."""
    if await host.read(request.user_id, request.session_id) is None:
        record = await service.store.get_session(request.user_id, request.session_id)
        if record is None:
            raise SessionNotFoundError(request.user_id, request.session_id)
    handle = await host.start_reflection(request.user_id, request.session_id)
    logger.info("Ending session %s/%s: reflection %s", request.user_id, request.session_id, handle.instance_id)
    # The host's status URLs are whatever its management payload holds; keep the ones the response documents.
    urls = {k: v for k, v in handle.status_urls.items() if k in EndSessionResponse.model_fields}
    return EndSessionResponse.model_validate(
        {**urls, "user_id": request.user_id, "session_id": request.session_id, "id": handle.instance_id}
    )


async def stats(service: MemoryService, host: SessionHost) -> StatsResponse:
    """The hot pool as it is now."""
    settings = service.settings
    figures = pool_rules.stats(
        await host.pool(), _now(), timedelta(minutes=settings.SESSION_TTL_MINUTES), settings.MAX_SESSIONS
    )
    return StatsResponse.model_validate(figures.model_dump())


async def forget_user(service: MemoryService, host: SessionHost, user_id: str) -> ForgetResponse:
    """Delete everything of a user: hot states, background-work histories, and every stored document."""
    sessions = await service.store.list_sessions(user_id, limit=1_000_000)
    purged = await host.forget(user_id, [s.session_id for s in sessions])
    deleted = await service.forget(user_id)
    return ForgetResponse(user_id=user_id, histories_purged=purged, **deleted.model_dump())


async def export_user(service: MemoryService, user_id: str) -> UserExport:
    """Everything stored about a user."""
    return await service.export(user_id)


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
    """Evict idle sessions (and the least recently used beyond capacity) and purge old histories.

    Runs at most once per ``EVICTION_INTERVAL_SECONDS`` whatever the timer's schedule; returns how many evictions
    were started.
    """
    settings = service.settings
    now = now or _now()
    hot = await host.pool()
    if hot.last_cleanup is not None and (now - hot.last_cleanup).total_seconds() < settings.EVICTION_INTERVAL_SECONDS:
        return 0
    await host.mark_cleaned(now)
    ttl = timedelta(minutes=settings.SESSION_TTL_MINUTES)
    keys = pool_rules.eviction_candidates(hot, now, ttl, settings.MAX_SESSIONS)
    stale_cutoff = now - ttl
    for key in keys:
        entry = hot.sessions[key]
        # Beyond capacity, a session is evicted even if recent: its last activity as the pool saw it is the cutoff.
        cutoff = max(stale_cutoff, entry.last_activity)
        await host.start_eviction(entry.user_id, entry.session_id, cutoff)
    purged = await host.purge_finished(now - timedelta(days=settings.HISTORY_RETENTION_DAYS))
    if keys or purged:
        logger.info(
            "Cleanup: %d sessions to evict of %d hot, %d histories purged", len(keys), len(hot.sessions), purged
        )
    return len(keys)
