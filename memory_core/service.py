"""The memory service's operations, shared by every host.

HTTP functions, activities and the local host call these; each takes plain domain values and returns domain or API
values. Hot session state (``SessionState``) is passed in and out: the session entity owns it, this module never
keeps it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from memory_core import reflection, retrieval
from memory_core.config import Settings
from memory_core.context import formatted_context
from memory_core.domain import Chunk, Insight, SessionStatus, SessionSummary, Turn
from memory_core.engines import build_chat_model, build_embedder, build_store
from memory_core.errors import ConflictError, SessionNotFoundError
from memory_core.models import (
    ContextResponse,
    InsightItem,
    InsightsRequest,
    InsightsResponse,
    Message,
    RetrievedItem,
    RetrieveRequest,
    RetrieveResponse,
    SummariesRequest,
    SummariesResponse,
    SummaryItem,
)
from memory_core.ports import ChatModel, Embedder, Store, UserDeletion, UserExport
from memory_core.session import (
    MAX_TRACKED_TURN_IDS,
    Compaction,
    SessionState,
    new_session,
    restore_session,
    to_record,
    uncompacted_turns,
)

logger = logging.getLogger(__name__)


class ReflectionOutcome(BaseModel):
    """What reflection wrote for a session (the reflection orchestration's output)."""

    user_id: str
    session_id: str
    turn_count: int
    summary_id: str | None = None
    summary: str | None = None
    insights_added: list[str] = Field(default_factory=list)
    insights_updated: list[str] = Field(default_factory=list)
    insights_superseded: list[str] = Field(default_factory=list)
    duplicates: int = 0


class MemoryService:
    """The store and model engines, shared by every request of a worker."""

    def __init__(self, settings: Settings, store: Store, chat: ChatModel, embedder: Embedder | None) -> None:
        self.settings = settings
        self.store = store
        self.chat = chat
        self.embedder = embedder

    @classmethod
    async def create(cls, settings: Settings) -> MemoryService:
        """Build the configured engines and open the store (checking its embedding identity)."""
        embedder = build_embedder(settings)
        store = build_store(settings)
        await store.open(
            embedder.model if embedder else None,
            embedder.dimensions if embedder else None,
        )
        return cls(settings, store, build_chat_model(settings), embedder)

    async def close(self) -> None:
        """Release every client."""
        await self.store.close()
        await self.chat.close()
        if self.embedder is not None:
            await self.embedder.close()

    async def _embed(self, texts: Sequence[str]) -> list[list[float]] | None:
        if self.embedder is None or not texts:
            return None
        return await self.embedder.embed(list(texts))

    # -- sessions -------------------------------------------------------------------------------------------------
    async def open_session(self, user_id: str, session_id: str | None, restore: bool, now: datetime) -> SessionState:
        """The state for a session that is not hot: a new one, or one rebuilt from the store (``restored``).

        Raises ``SessionNotFoundError`` when asked to restore a session that does not exist or has ended, and
        ``ConflictError`` when asked to create a session under an id that is already taken.
        """
        if session_id is None:
            state = new_session(user_id, uuid.uuid4().hex, now)
            await self.store.put_session(to_record(state, SessionStatus.ACTIVE))
            return state
        started = time.perf_counter()
        record = await self.store.get_session(user_id, session_id)
        if record is None:
            if restore:
                raise SessionNotFoundError(user_id, session_id)
            state = new_session(user_id, session_id, now)
            await self.store.put_session(to_record(state, SessionStatus.ACTIVE))
            return state
        if record.status is SessionStatus.ENDED:
            raise SessionNotFoundError(user_id, session_id)
        if not restore:
            raise ConflictError(
                "A session with this id already exists; start it with restore=true or omit session_id",
                field="session_id",
            )
        # The open turns, and enough before them to recognise retried turn ids as a hot session does.
        after_seq = min(record.compacted_through, max(0, record.turn_count - MAX_TRACKED_TURN_IDS))
        turns = await self.store.get_turns(user_id, session_id, after_seq=after_seq)
        state = restore_session(record, turns, self.settings.K_TURN_BUFFER, now)
        if record.status is SessionStatus.ACTIVE:
            # Recorded as hot but its state was not in the pool yet (a turn raced its start): not a cold restore.
            return state.model_copy(update={"restored": False})
        await self.store.put_session(to_record(state, SessionStatus.ACTIVE))
        logger.info(
            "✓ Cold session restored: %s/%s (%.0fms)", user_id, session_id, (time.perf_counter() - started) * 1000
        )
        return state

    async def context(self, state: SessionState) -> ContextResponse:
        """The ready-to-inject context of a hot session."""
        insights = await self.store.get_insights(state.user_id, limit=self.settings.MAX_LIST_LIMIT)
        summaries = await self.store.get_summaries(state.user_id, limit=self.settings.M_SESSIONS_RECENT)
        summaries = [s for s in summaries if s.session_id != state.session_id]
        recent = list(state.recent)
        return ContextResponse(
            session_id=state.session_id,
            user_id=state.user_id,
            active_context=[
                message
                for turn in recent
                for message in (
                    Message(role="user", content=turn.user_message),
                    Message(role="assistant", content=turn.agent_message),
                )
            ],
            cumulative_summary=state.cumulative_summary,
            insights=[i.text for i in insights],
            session_summaries=[s.summary for s in summaries],
            formatted_context=formatted_context(
                insights=[i.text for i in insights],
                session_summaries=[s.summary for s in summaries],
                cumulative_summary=state.cumulative_summary,
                recent_turns=recent,
                budget=self.settings.CONTEXT_TOKEN_BUDGET,
            ),
            restored=state.restored,
            turn_count=state.turn_count,
        )

    async def persist_turn(self, turn: Turn) -> None:
        """Write a turn (and its embedding) to the store."""
        vectors = await self._embed([turn.text()])
        await self.store.put_turns([turn], vectors)

    async def compact(self, compaction: Compaction, now: datetime) -> str:
        """Write the chunk document and return the new cumulative summary (the chunk folded into the previous one)."""
        turns = list(compaction.turns)
        chunk_summary = await self.chat.summarize(turns, "", max_words=120)
        cumulative = await self.chat.summarize(turns, compaction.previous_summary, max_words=250)
        chunk = Chunk(
            user_id=compaction.user_id,
            session_id=compaction.session_id,
            index=compaction.index,
            first_seq=turns[0].seq,
            last_seq=turns[-1].seq,
            summary=chunk_summary,
            timestamp=turns[-1].timestamp,
        )
        vectors = await self._embed([chunk_summary])
        await self.store.put_chunk(chunk, vectors[0] if vectors else None)
        record = await self.store.get_session(compaction.user_id, compaction.session_id)
        if record is not None and record.compacted_through < chunk.last_seq:
            await self.store.put_session(
                record.model_copy(
                    update={
                        "compacted_through": chunk.last_seq,
                        "cumulative_summary": cumulative,
                        "chunk_count": compaction.index + 1,
                        "turn_count": max(record.turn_count, chunk.last_seq),
                        "last_activity": max(record.last_activity, now),
                    }
                )
            )
        return cumulative

    async def save_session(
        self, user_id: str, session_id: str, state: SessionState | None, status: SessionStatus
    ) -> None:
        """Write what is hot to the store and mark the session ``idle`` (restorable) or ``ended``.

        Turns the store lacks (their ingest failed for good) are written with their embeddings; the rest are
        already there. Without a hot state, only the record's status changes.
        """
        if state is None:
            record = await self.store.get_session(user_id, session_id)
            if record is None:
                raise SessionNotFoundError(user_id, session_id)
        else:
            hot = list(uncompacted_turns(state))
            stored = {t.seq for t in await self.store.get_turns(user_id, session_id, after_seq=state.compacted_through)}
            missing = [t for t in hot if t.seq not in stored]
            if missing:
                await self.store.put_turns(missing, await self._embed([t.text() for t in missing]))
                logger.warning("Wrote %d turns of %s/%s that ingest had not stored", len(missing), user_id, session_id)
            record = to_record(state, status)
        update: dict[str, object] = {"status": status}
        if status is SessionStatus.ENDED and record.ended_at is None:
            update["ended_at"] = state.ended_at if state is not None and state.ended_at else record.last_activity
        await self.store.put_session(record.model_copy(update=update))

    async def reflect(self, user_id: str, session_id: str, now: datetime) -> ReflectionOutcome:
        """Summarise the ended session and consolidate its insights; writing twice writes nothing new."""
        turns = await self.store.get_turns(user_id, session_id)
        chunks = await self.store.get_chunks(user_id, session_id)
        threshold = self.settings.REFLECTION_THRESHOLD_TURNS
        summary = await reflection.summarize_session(self.chat, user_id, session_id, chunks, turns, threshold, now)
        outcome = ReflectionOutcome(user_id=user_id, session_id=session_id, turn_count=len(turns))
        if summary is not None:
            await self._write_summary(summary)
            outcome.summary_id, outcome.summary = summary.id, summary.summary
        if len(turns) < threshold:
            return outcome
        candidates = await self.chat.extract_insights(turns)
        existing = await self.store.get_insights(user_id, include_superseded=True, limit=10_000)
        plan = reflection.consolidate(
            existing,
            candidates,
            user_id=user_id,
            session_id=session_id,
            turn_times={t.seq: t.timestamp for t in turns},
            now=now,
        )
        writes = plan.writes
        if writes:
            await self.store.put_insights(writes, await self._embed([i.text for i in writes]))
        outcome.insights_added = [i.id for i in plan.added]
        outcome.insights_updated = [i.id for i in plan.updated]
        outcome.insights_superseded = [i.id for i in plan.superseded]
        outcome.duplicates = plan.duplicates
        logger.info(
            "Reflection of %s/%s: %d turns, %d insights added, %d updated, %d superseded, %d duplicates",
            user_id,
            session_id,
            len(turns),
            len(plan.added),
            len(plan.updated),
            len(plan.superseded),
            plan.duplicates,
        )
        return outcome

    async def _write_summary(self, summary: SessionSummary) -> None:
        vectors = await self._embed([summary.summary])
        await self.store.put_summary(summary, vectors[0] if vectors else None)

    # -- reads ------------------------------------------------------------------------------------------------------
    async def retrieve(self, request: RetrieveRequest) -> RetrieveResponse:
        """Hybrid search over the user's memory."""
        hits = await retrieval.search(self.store, self.embedder, request.user_id, request.query, request.top_k)
        return RetrieveResponse(
            query=request.query,
            facts=[h.text for h in hits],
            count=len(hits),
            items=[RetrievedItem.from_hit(h) for h in hits],
        )

    async def insights(self, request: InsightsRequest) -> InsightsResponse:
        """The user's insights; ``recent_only`` keeps those learned in the last M sessions."""
        found: list[Insight] = await self.store.get_insights(
            request.user_id, include_superseded=request.include_superseded, limit=request.limit
        )
        if request.recent_only:
            recent = await self.store.get_summaries(request.user_id, limit=self.settings.M_SESSIONS_RECENT)
            sessions = {s.session_id for s in recent}
            found = [i for i in found if i.source_session_id in sessions]
        return InsightsResponse(
            user_id=request.user_id,
            insights=[i.text for i in found],
            count=len(found),
            items=[InsightItem.from_insight(i) for i in found],
        )

    async def summaries(self, request: SummariesRequest) -> SummariesResponse:
        """The user's most recent session summaries, newest first."""
        found = await self.store.get_summaries(request.user_id, limit=request.limit)
        return SummariesResponse(
            user_id=request.user_id,
            summaries=[s.summary for s in found],
            count=len(found),
            items=[SummaryItem.from_summary(s) for s in found],
        )

    async def forget(self, user_id: str) -> UserDeletion:
        """Delete everything stored about a user."""
        deleted = await self.store.delete_user(user_id)
        logger.info("Forgot user %s: %s", user_id, deleted.model_dump())
        return deleted

    async def export(self, user_id: str) -> UserExport:
        """Everything stored about a user."""
        return await self.store.export_user(user_id)
