"""The memory service's operations, shared by every host.

HTTP functions, activities and the local host call these; each takes plain domain values and returns domain or API
values. The request path (start, store, context, end) reads and writes the store only; background work (indexing,
compaction, eviction, reflection) runs in activities and reports to the session entity what it did.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from pydantic import BaseModel, Field

from memory_core import reflection, retrieval, telemetry
from memory_core import session as rules
from memory_core.config import Settings
from memory_core.context import default_counter, formatted_context
from memory_core.domain import Chunk, Insight, SessionRecord, SessionStatus, SessionSummary, Turn
from memory_core.engines import build_chat_model, build_embedder, build_store
from memory_core.errors import ConflictError, NotFoundError, SessionNotFoundError
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
from memory_core.ports import (
    AppendOutcome,
    ChatModel,
    Embedder,
    RecordChange,
    SessionGuard,
    Store,
    UserDeletion,
    UserExport,
)
from memory_core.session import Claim, CompactionDone, SessionSnapshot, TurnInput

logger = logging.getLogger(__name__)

# db.system.name of each store (OpenTelemetry's database conventions).
STORE_SYSTEMS = {"sqlite": "sqlite", "cosmos": "azure.cosmosdb"}


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


def _indexed(record: SessionRecord, *, first: int, last: int) -> SessionRecord | None:
    return rules.record_indexed(record, first, last)


def _guarded(change: RecordChange, guard: SessionGuard) -> RecordChange:
    """``change``, applied only to the session background work found (not to a session started again since)."""

    def apply(record: SessionRecord) -> SessionRecord | None:
        return change(record) if guard.holds(record) else None

    return apply


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
        return cls(
            settings,
            cast(Store, telemetry.TracedStore(store, STORE_SYSTEMS[settings.STORE])),
            cast(ChatModel, telemetry.TracedChatModel(build_chat_model(settings))),
            cast(Embedder, telemetry.TracedEmbedder(embedder, settings.EMBEDDINGS_PROVIDER)) if embedder else None,
        )

    def _span(self, name: str, user_id: str, session_id: str | None = None, **attributes: Any) -> telemetry.SpanScope:
        """The span of one use case or background step (ids only with ``TELEMETRY_RECORD_IDS``)."""
        return telemetry.use_case(
            name,
            record_ids=self.settings.TELEMETRY_RECORD_IDS,
            user_id=user_id,
            session_id=session_id,
            attributes=attributes,
        )

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
    async def start_session(
        self, user_id: str, session_id: str | None, restore: bool, now: datetime
    ) -> tuple[SessionRecord, bool]:
        """Start a session, or continue the one with this id (``restore``); returns its record and ``restored``.

        An id no session has starts a new session under it (the guide's client picks its session ids itself). An
        ended session is "Session not found" when asked to restore; a taken id without ``restore`` is a conflict.
        ``restored`` is true when this call brought an evicted session back into the hot pool.
        """
        if session_id is None:
            session_id = uuid.uuid4().hex
        record = rules.new_record(user_id, session_id, now)
        if await self.store.create_session(record):
            return record, False
        if not restore:
            raise ConflictError(
                "A session with this id already exists; start it with restore=true or omit session_id",
                field="session_id",
            )
        return await self.open_session(user_id, session_id, now)

    async def open_session(self, user_id: str, session_id: str, now: datetime) -> tuple[SessionRecord, bool]:
        """The record of a session that is not ended; an evicted one is brought back (``restored`` true)."""
        started = time.perf_counter()
        record, revived = await self.store.get_session(user_id, session_id), False
        if record is not None and record.status is SessionStatus.IDLE:
            # Only an evicted session is written to: a hot one is read, without taking the store's write lock.
            update = await self.store.update_session(user_id, session_id, lambda r: rules.revive(r, now))
            record, revived = update.record, update.changed
        if record is None or record.status is SessionStatus.ENDED:
            raise SessionNotFoundError(user_id, session_id)
        elapsed = (time.perf_counter() - started) * 1000
        if revived:
            logger.info("✓ Cold session restored: %s/%s (%.0fms)", user_id, session_id, elapsed)
        else:
            logger.info("✓ Hot session: %s/%s (%.0fms)", user_id, session_id, elapsed)
        return record, revived

    async def append_turn(self, user_id: str, session_id: str, turn: TurnInput, now: datetime) -> AppendOutcome:
        """Store a turn: numbered, counted and durable when this returns (see ``Store.append_turn``)."""
        outcome = await self.store.append_turn(user_id, session_id, turn, now)
        logger.debug(
            "Turn %s of %s/%s stored as %d%s",
            turn.turn_id,
            user_id,
            session_id,
            outcome.turn.seq,
            " (repeat)" if outcome.duplicate else "",
        )
        return outcome

    async def end_session(self, user_id: str, session_id: str, now: datetime) -> SessionRecord:
        """Mark the session ended, so that no turn is accepted after this returns; ending twice is harmless."""
        update = await self.store.update_session(user_id, session_id, lambda r: rules.end(r, now))
        if update.record is None:
            raise SessionNotFoundError(user_id, session_id)
        return update.record

    async def context(self, record: SessionRecord, restored: bool, after_turn_id: str | None = None) -> ContextResponse:
        """The ready-to-inject context: the session's record and its last K turns, insights and recent summaries.

        Every turn the store acknowledged before the record was read is in it. ``after_turn_id`` must name a turn
        of the session (it is a 404 otherwise).
        """
        user_id, session_id, keep = record.user_id, record.session_id, self.settings.K_TURN_BUFFER
        recent, insights, summaries = await asyncio.gather(
            self.store.get_turns(user_id, session_id, after_seq=max(0, record.turn_count - keep)),
            self.store.get_insights(user_id, limit=self.settings.MAX_LIST_LIMIT),
            self.store.get_summaries(user_id, limit=self.settings.M_SESSIONS_RECENT + 1),
        )
        # Turns stored after the record was read may be there too; the context shows the last K.
        recent = recent[-keep:]
        if after_turn_id is not None and all(t.turn_id != after_turn_id for t in recent):
            if await self.store.get_turn(user_id, session_id, after_turn_id) is None:
                raise NotFoundError(f"Turn {after_turn_id!r} was never stored in this session", field="after_turn_id")
        summaries = [s for s in summaries if s.session_id != session_id][: self.settings.M_SESSIONS_RECENT]
        turn_count = max([record.turn_count, *(t.seq for t in recent)])
        return ContextResponse(
            session_id=session_id,
            user_id=user_id,
            active_context=[
                message
                for turn in recent
                for message in (
                    Message(role="user", content=turn.user_message),
                    Message(role="assistant", content=turn.agent_message),
                )
            ],
            cumulative_summary=record.cumulative_summary,
            insights=[i.text for i in insights],
            session_summaries=[s.summary for s in summaries],
            formatted_context=formatted_context(
                insights=[i.text for i in insights],
                session_summaries=[s.summary for s in summaries],
                cumulative_summary=record.cumulative_summary,
                recent_turns=recent,
                budget=self.settings.CONTEXT_TOKEN_BUDGET,
            ),
            restored=restored,
            turn_count=turn_count,
        )

    # -- background work --------------------------------------------------------------------------------------------
    # Each step reads the session record first and writes under its ``SessionGuard``: once the user's forget has
    # deleted the record (or a new session took its id), nothing the step read before is written back.
    async def index_turns(self, user_id: str, session_id: str, through_seq: int | None) -> SessionSnapshot | None:
        """Index the batch's turns (``_index_turns``) in a ``memory.index`` span."""
        with self._span("index", user_id, session_id):
            return await self._index_turns(user_id, session_id, through_seq)

    async def _index_turns(self, user_id: str, session_id: str, through_seq: int | None) -> SessionSnapshot | None:
        """Index turns: the window of the batch that turn ``through_seq`` started, or (None) every turn not indexed.

        Indexing adds each turn's vector (with an embedder; full-text search has the turn from the moment it is
        stored). Returns what the store then says about the session, for its entity; None when the session is gone.
        """
        record = await self.store.get_session(user_id, session_id)
        if record is None:
            return None
        guard = SessionGuard.of(record)
        keep, chunk = self.settings.K_TURN_BUFFER, self.settings.L_TURN_CHUNKS
        if through_seq is not None:
            windows = [rules.batch_window(through_seq, keep, chunk)]
        else:
            windows = rules.unindexed_windows(record)
        for first, last in windows:
            last = min(last, record.turn_count)
            if last < first:
                continue
            if self.embedder is not None:
                turns = await self.store.get_turns(user_id, session_id, after_seq=first - 1, limit=last - first + 1)
                if turns:
                    vectors = await self._embed([t.text() for t in turns]) or []
                    await self.store.set_turn_vectors(turns, vectors, guard=guard)
            indexed = _guarded(partial(_indexed, first=first, last=last), guard)
            update = await self.store.update_session(user_id, session_id, indexed)
            if update.record is None or not guard.holds(update.record):
                return None  # forgotten meanwhile
            record = update.record
        recent = await self.store.get_turns(
            user_id, session_id, after_seq=max(0, record.turn_count - min(keep, rules.RECENT_REFS))
        )
        return SessionSnapshot.of(record, recent)

    async def compact(self, claim: Claim, now: datetime) -> CompactionDone:
        """Compact the claimed chunks (``_compact``) in a ``memory.compact`` span."""
        attributes = {"memory.chunk.index": claim.index, "memory.chunk.count": claim.chunks}
        with self._span("compact", claim.user_id, claim.session_id, **attributes):
            return await self._compact(claim, now)

    async def _compact(self, claim: Claim, now: datetime) -> CompactionDone:
        """Compact the claimed chunks in order: write each chunk's document and fold it into the cumulative summary.

        A chunk that was compacted already (a retry, a replay, or another worker) is not compacted again, and each
        chunk is committed on its own, so a retry after a failure goes on from the first chunk not folded. The answer
        is the session's compaction as the store has it.
        """
        record = await self.store.get_session(claim.user_id, claim.session_id)
        if record is None:
            raise SessionNotFoundError(claim.user_id, claim.session_id)
        guard = SessionGuard.of(record)
        for index, first_seq, last_seq in claim.parts():
            if record.compacted_through == first_seq - 1 and record.chunk_count == index:
                record = await self._compact_chunk(record, guard, index, first_seq, last_seq)
        return CompactionDone(
            chunk_count=record.chunk_count,
            through_seq=record.compacted_through,
            summary=rules.bounded_summary(record.cumulative_summary),
        )

    async def _compact_chunk(
        self, record: SessionRecord, guard: SessionGuard, index: int, first_seq: int, last_seq: int
    ) -> SessionRecord:
        """Write chunk ``index`` (seqs ``first..last``) and fold it into the record's cumulative summary."""
        user_id, session_id = record.user_id, record.session_id
        turns = await self.store.get_turns(user_id, session_id, after_seq=first_seq - 1, limit=last_seq - first_seq + 1)
        if not turns:
            raise SessionNotFoundError(user_id, session_id)  # forgotten since it was read
        chunk_summary = await self.chat.summarize(turns, "", max_words=120)
        cumulative = await self.chat.summarize(turns, record.cumulative_summary, max_words=250)
        chunk = Chunk(
            user_id=user_id,
            session_id=session_id,
            index=index,
            first_seq=turns[0].seq,
            last_seq=turns[-1].seq,
            summary=chunk_summary,
            timestamp=turns[-1].timestamp,
        )
        vectors = await self._embed([chunk_summary])
        if not await self.store.put_chunk(chunk, vectors[0] if vectors else None, guard=guard):
            raise SessionNotFoundError(user_id, session_id)  # forgotten meanwhile
        compacted = _guarded(
            lambda r: rules.record_compaction(r, index, chunk.first_seq, chunk.last_seq, cumulative), guard
        )
        update = await self.store.update_session(user_id, session_id, compacted)
        return update.record or record

    async def evict(self, user_id: str, session_id: str, cutoff: datetime) -> bool:
        """Move the session out of the hot pool (``idle``, restorable) if nothing happened in it after ``cutoff``."""
        update = await self.store.update_session(user_id, session_id, lambda r: rules.mark_idle(r, cutoff))
        if update.changed and update.record is not None:
            age = (datetime.now(UTC) - update.record.last_activity).total_seconds()
            logger.info("Evicted stale session: %s/%s (age: %.0fs)", user_id, session_id, age)
        return update.changed

    async def reflect(self, user_id: str, session_id: str, now: datetime) -> ReflectionOutcome:
        """Reflect (``_reflect``) in a ``memory.reflect`` span, timed by ``memory.reflection.duration``."""
        started = time.perf_counter()
        with self._span("reflect", user_id, session_id) as current:
            outcome = await self._reflect(user_id, session_id, now)
            current.set_attribute("memory.turn_count", outcome.turn_count)
            current.set_attribute("memory.insights.added", len(outcome.insights_added))
            written = len(outcome.insights_added) + len(outcome.insights_updated)
            current.set_attribute("gen_ai.memory.record.count", written)
        telemetry.REFLECTION_DURATION.record(time.perf_counter() - started, {"memory.insights": outcome.turn_count > 0})
        return outcome

    async def _reflect(self, user_id: str, session_id: str, now: datetime) -> ReflectionOutcome:
        """Summarise the ended session and consolidate its insights; writing twice writes nothing new.

        A session that is gone (its user was forgotten) is not reflected on: the outcome is empty.
        """
        outcome = ReflectionOutcome(user_id=user_id, session_id=session_id, turn_count=0)
        record = await self.store.get_session(user_id, session_id)
        if record is None:
            logger.info("Reflection of %s/%s: the session is gone; nothing to reflect on", user_id, session_id)
            return outcome
        guard = SessionGuard.of(record)
        turns = await self.store.get_turns(user_id, session_id)
        chunks = await self.store.get_chunks(user_id, session_id)
        threshold = self.settings.REFLECTION_THRESHOLD_TURNS
        summary = await reflection.summarize_session(self.chat, user_id, session_id, chunks, turns, threshold, now)
        outcome.turn_count = len(turns)
        if summary is not None and await self._write_summary(summary, guard):
            outcome.summary_id, outcome.summary = summary.id, summary.summary
        if len(turns) >= threshold:
            await self._consolidate(outcome, turns, now, guard)
        await self.store.update_session(user_id, session_id, _guarded(lambda r: rules.record_reflected(r, now), guard))
        return outcome

    async def _consolidate(
        self, outcome: ReflectionOutcome, turns: list[Turn], now: datetime, guard: SessionGuard
    ) -> None:
        user_id, session_id = outcome.user_id, outcome.session_id
        candidates = await self.chat.extract_insights(turns)
        existing = await self.store.get_insights(user_id, include_superseded=True, limit=None)  # all: keys match any
        plan = reflection.consolidate(
            existing,
            candidates,
            user_id=user_id,
            session_id=session_id,
            turn_times={t.seq: t.timestamp for t in turns},
            now=now,
        )
        writes = plan.writes
        if writes and not await self.store.put_insights(
            writes, await self._embed([i.text for i in writes]), guard=guard
        ):
            logger.info("Reflection of %s/%s: the session is gone; its insights were not kept", user_id, session_id)
            return
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

    async def _write_summary(self, summary: SessionSummary, guard: SessionGuard) -> bool:
        vectors = await self._embed([summary.summary])
        return await self.store.put_summary(summary, vectors[0] if vectors else None, guard=guard)

    # -- reads ------------------------------------------------------------------------------------------------------
    async def retrieve(self, request: RetrieveRequest) -> RetrieveResponse:
        """Hybrid search over the user's memory (``_retrieve``) in a ``memory.retrieve`` span, counted."""
        attrs: dict[str, Any] = {"gen_ai.memory.store.id": "memory", "memory.top_k": request.top_k}
        with self._span("retrieve", request.user_id, **attrs) as current:
            response = await self._retrieve(request)
            current.set_attribute("gen_ai.memory.record.count", response.count)
        telemetry.RETRIEVALS.add(1, {"memory.budgeted": request.max_tokens is not None})
        telemetry.RETRIEVED_ITEMS.record(response.count)
        return response

    async def _retrieve(self, request: RetrieveRequest) -> RetrieveResponse:
        """Hybrid search over the user's memory, filtered; with ``max_tokens``, the best items that fit it."""
        kinds = tuple(request.kinds) if request.kinds else retrieval.ALL_KINDS
        where = request.item_filter()
        count = default_counter().count
        if request.max_tokens is None:
            hits = await retrieval.search(
                self.store, self.embedder, request.user_id, request.query, request.top_k, kinds, where
            )
            tokens = sum(count(h.text) for h in hits)
        else:
            # Without a top_k of its own the budget decides how many items come back. Candidates: at most twice the
            # items, at least 20, else one per 48 tokens of budget (a conversational turn takes some 40-60). Measured
            # with bench/retrieval_bench.py against one per 16 tokens (at least 10): 74.2 / 82.6 / 87.5 -> 74.2 /
            # 83.0 / 88.0 at 250 / 500 / 1000 words with one per 32, p50 at 1000 words 11.0 -> 8.3 ms (6.0x -> 5.5x
            # /health). With the session context, one per 48 kept 78.0 / 85.4 / 90.1 and took 0.7 ms off a
            # 1000-word query in process (6.1 -> 5.4 ms, the bench's questions replayed; one per 64: 89.3 there).
            limit = request.top_k if "top_k" in request.model_fields_set else self.settings.MAX_TOP_K
            depth = min(2 * limit, max(20, request.max_tokens // 48))
            candidates = await retrieval.search(
                self.store, self.embedder, request.user_id, request.query, depth, kinds, where
            )
            hits, tokens = retrieval.fit_budget(candidates, request.query, request.max_tokens, count, limit)
        return RetrieveResponse(
            query=request.query,
            facts=[h.text for h in hits],
            count=len(hits),
            items=[RetrievedItem.from_hit(h) for h in hits],
            tokens=tokens,
        )

    async def insights(self, request: InsightsRequest) -> InsightsResponse:
        """The user's insights (``_insights``) in a ``memory.insights`` span."""
        with self._span("insights", request.user_id, **{"gen_ai.memory.store.id": "insights"}) as current:
            response = await self._insights(request)
            current.set_attribute("gen_ai.memory.record.count", response.count)
            return response

    async def _insights(self, request: InsightsRequest) -> InsightsResponse:
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
        with self._span("summaries", request.user_id, **{"gen_ai.memory.store.id": "summaries"}) as current:
            found = await self.store.get_summaries(request.user_id, limit=request.limit)
            current.set_attribute("gen_ai.memory.record.count", len(found))
        return SummariesResponse(
            user_id=request.user_id,
            summaries=[s.summary for s in found],
            count=len(found),
            items=[SummaryItem.from_summary(s) for s in found],
        )

    async def forget(self, user_id: str) -> UserDeletion:
        """Delete everything stored about a user."""
        deleted = await self.store.delete_user(user_id)
        if deleted != UserDeletion():
            logger.info("Forgot user %s: %s", user_id, deleted.model_dump())
        return deleted

    async def export(self, user_id: str) -> UserExport:
        """Everything stored about a user."""
        return await self.store.export_user(user_id)
