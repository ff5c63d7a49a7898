"""The ports memory_core depends on; adapters in ``memory_core.adapters`` implement them.

Every method is scoped to one user: no port method can read or write across users.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from memory_core.domain import (
    Chunk,
    Insight,
    ItemFilter,
    MemoryKind,
    SearchHit,
    SessionRecord,
    SessionStatus,
    SessionSummary,
    Turn,
)
from memory_core.session import HotSession, TurnInput

Vector = Sequence[float]
# A pure transition of a session record (``memory_core.session``): the new record, or None to change nothing.
RecordChange = Callable[[SessionRecord], SessionRecord | None]


class SessionGuard(BaseModel):
    """The session that background work writes for, as the work found it: its writes land only while it exists.

    A forget deletes the user's session records before anything else, and a session started again under the same id
    after a forget has another ``started_at``: either way a write guarded by the old record is refused. SQLite checks
    it in the write's transaction; Cosmos DB reads the record again after the write and undoes the write when the
    session is gone (a forget that began meanwhile deletes it anyway).
    """

    model_config = ConfigDict(frozen=True)

    user_id: str
    session_id: str
    started_at: datetime

    @classmethod
    def of(cls, record: SessionRecord) -> SessionGuard:
        """The guard of the session this record is."""
        return cls(user_id=record.user_id, session_id=record.session_id, started_at=record.started_at)

    def holds(self, record: SessionRecord | None) -> bool:
        """Whether ``record`` is the guarded session (the same start of it)."""
        return (
            record is not None
            and (record.user_id, record.session_id) == (self.user_id, self.session_id)
            and record.started_at == self.started_at
        )


class PendingForget(BaseModel):
    """A user's forget that has begun and is not complete: the store refuses the user's writes until it is.

    It holds what finishing the forget needs and nothing else: the user's id (the store's rows and the Durable
    instance ids derive from it) and when the forget began. It is deleted once nothing of the user remains.
    """

    user_id: str
    began_at: datetime


class UserDeletion(BaseModel):
    """How many documents of each kind a forget removed."""

    sessions: int = 0
    turns: int = 0
    chunks: int = 0
    summaries: int = 0
    insights: int = 0


class AppendOutcome(BaseModel):
    """What appending a turn did: the stored turn (the earlier one for a repeat) and the session record after it."""

    turn: Turn
    duplicate: bool
    record: SessionRecord


class RecordUpdate(BaseModel):
    """The session record after an update (None: there is no such session), and whether the update changed it."""

    record: SessionRecord | None
    changed: bool


class SessionFigures(BaseModel):
    """Aggregates over the sessions of one status, across users (for ``/stats``)."""

    count: int = 0
    lagging: int = Field(0, description="sessions whose background work is a whole batch or more behind")
    oldest_activity: datetime | None = None
    mean_activity: datetime | None = None


class UserExport(BaseModel):
    """Everything stored about one user."""

    user_id: str
    sessions: list[SessionRecord] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)
    chunks: list[Chunk] = Field(default_factory=list)
    summaries: list[SessionSummary] = Field(default_factory=list)
    insights: list[Insight] = Field(default_factory=list)


@runtime_checkable
class Store(Protocol):
    """Durable memory of every user: sessions, turns, chunks, summaries and insights.

    Writes are idempotent upserts keyed by deterministic ids, so a retried activity writes nothing twice. While a
    user's forget is pending (``begin_forget`` .. ``finish_forget``) the store refuses to start a session or append a
    turn for them (``UserForgettingError``); background writes carry a ``SessionGuard`` and land only while their
    session exists.
    """

    async def open(self, embedding_model: str | None, dimensions: int | None) -> None:
        """Create what is missing and check the store's embedding identity.

        Raises ``EmbeddingDimensionMismatchError`` when the store holds vectors of another model or dimension.
        """

    async def close(self) -> None:
        """Release connections."""

    # sessions
    async def put_session(self, record: SessionRecord) -> None:
        """Insert or replace a session record."""

    async def create_session(self, record: SessionRecord) -> bool:
        """Insert a session record unless one with its id exists; False when it did.

        Raises ``UserForgettingError`` while the user's forget is pending (checked when the record is written).
        """

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None:
        """One session record, or None."""

    async def update_session(self, user_id: str, session_id: str, change: RecordChange) -> RecordUpdate:
        """Apply a pure transition to the current record atomically (re-read and retried if a write intervened)."""

    async def append_turn(self, user_id: str, session_id: str, turn: TurnInput, now: datetime) -> AppendOutcome:
        """Store a turn with the next sequence number and count it in its session record, atomically.

        A ``turn_id`` the session already holds returns that turn (``duplicate``) and writes nothing, however long
        ago it was stored. Raises ``SessionNotFoundError`` (no such session), ``SessionEndedError`` (the session has
        ended), ``ConflictError`` naming the field (the ``turn_id`` was stored with other content) and
        ``UserForgettingError`` (the user's forget began before the turn was acknowledged).
        """

    async def scan_sessions(
        self,
        status: SessionStatus,
        *,
        idle_before: datetime | None = None,
        lagging_by: int | None = None,
        unreflected: bool = False,
        limit: int = 100,
    ) -> list[SessionRecord]:
        """Sessions of every user with ``status``, least recently active first (the cleanup timer's query).

        ``idle_before``: last active before that time; ``lagging_by``: ``turn_count - indexed_through`` at least
        that; ``unreflected``: reflection has not finished.
        """

    async def session_figures(self, status: SessionStatus, lagging_by: int) -> SessionFigures:
        """Count and activity of every user's sessions with ``status``."""

    async def recent_sessions(self, limit: int = 100) -> list[SessionRecord]:
        """Sessions of every user, whatever their status, most recently active first (the inspector's listing)."""

    async def claim_cleanup(self, now: datetime, interval_seconds: float) -> bool:
        """True, and remember ``now``, when no cleanup was claimed in the last ``interval_seconds``."""

    async def list_sessions(
        self, user_id: str, status: SessionStatus | None = None, limit: int | None = 100
    ) -> list[SessionRecord]:
        """The user's sessions, most recently active first; ``limit`` None: every one (the store pages through)."""

    # turns
    async def put_turns(self, turns: Sequence[Turn], embeddings: Sequence[Vector | None] | None = None) -> None:
        """Write turns as they are (numbered by ``append_turn``), by (user, session, turn_id), with their embeddings.

        Background indexing uses it to add vectors to stored turns; without an embedding a stored one is kept.
        """

    async def get_turns(
        self, user_id: str, session_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[Turn]:
        """The session's turns with seq > after_seq, in seq order."""

    async def get_turn(self, user_id: str, session_id: str, turn_id: str) -> Turn | None:
        """The session's turn stored under ``turn_id``, or None."""

    async def set_turn_vectors(
        self, turns: Sequence[Turn], vectors: Sequence[Vector], *, guard: SessionGuard | None = None
    ) -> int:
        """Add each stored turn's vector; a turn that is no longer stored is left out (never written back).

        With a ``guard``, nothing is written unless the guarded session exists. Returns how many turns got their vector.
        """

    # chunks
    async def put_chunk(
        self, chunk: Chunk, embedding: Vector | None = None, *, guard: SessionGuard | None = None
    ) -> bool:
        """Upsert a chunk by (user, session, index); with a ``guard``, only while that session exists.

        Returns whether it was written.
        """

    async def get_chunks(self, user_id: str, session_id: str) -> list[Chunk]:
        """The session's chunks in order."""

    # summaries
    async def put_summary(
        self, summary: SessionSummary, embedding: Vector | None = None, *, guard: SessionGuard | None = None
    ) -> bool:
        """Upsert the one summary of a session; with a ``guard``, only while that session exists. Whether written."""

    async def get_summaries(self, user_id: str, limit: int = 5) -> list[SessionSummary]:
        """The user's session summaries, newest first."""

    # insights
    async def put_insights(
        self,
        insights: Sequence[Insight],
        embeddings: Sequence[Vector | None] | None = None,
        *,
        guard: SessionGuard | None = None,
    ) -> bool:
        """Upsert insights by id; with a ``guard`` (the session they were learned in), only while it exists.

        Returns whether they were written.
        """

    async def get_insights(
        self, user_id: str, include_superseded: bool = False, limit: int | None = 100
    ) -> list[Insight]:
        """The user's insights, most recently updated first; ``limit`` None: every one (the store pages through)."""

    # search
    async def search_text(
        self, user_id: str, query: str, kinds: Sequence[MemoryKind], limit: int, where: ItemFilter | None = None
    ) -> list[SearchHit]:
        """Full-text (BM25) search over the user's memory; best first, score higher is better.

        Superseded insights are left out unless ``where.as_of`` asks for what was believed at a time; ``where``
        restricts the items inside the query, so ``limit`` hits come back whenever that many match.
        """

    async def search_vector(
        self, user_id: str, vector: Vector, kinds: Sequence[MemoryKind], limit: int, where: ItemFilter | None = None
    ) -> list[SearchHit]:
        """Vector similarity search over the user's memory; best first, score higher is better (as ``search_text``)."""

    # users
    async def begin_forget(self, user_id: str, now: datetime) -> datetime:
        """Record that the user's forget began (a ``PendingForget``): from now on the user's writes are refused.

        Returns when it began: ``now``, or the time of a forget of the user still pending.
        """

    async def finish_forget(self, user_id: str) -> None:
        """Remove the user's pending forget: nothing of the user remains, and the user may come back."""

    async def pending_forgets(self, limit: int = 100) -> list[PendingForget]:
        """Forgets that began and are not complete, oldest first (the cleanup timer's follow-up)."""

    async def delete_user(self, user_id: str) -> UserDeletion:
        """Remove everything stored about the user; a pending forget of the user is kept.

        The session records go first (so appends in flight fail), then every turn, chunk, summary and insight.
        """

    async def export_user(self, user_id: str) -> UserExport:
        """Everything stored about the user."""


class InsightCandidate(BaseModel):
    """An insight as a chat model extracts it, before consolidation."""

    key: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=1000)
    source_turns: list[int] = Field(default_factory=list)


@runtime_checkable
class ChatModel(Protocol):
    """The language model behind compaction and reflection. Never called on a request path."""

    name: str

    async def summarize(self, turns: Sequence[Turn], previous_summary: str = "", max_words: int = 200) -> str:
        """A summary of the turns that continues ``previous_summary`` (the cumulative summary so far)."""

    async def summarize_session(self, chunks: Sequence[Chunk], turns: Sequence[Turn], max_words: int = 200) -> str:
        """A summary of one whole session from its chunk summaries and the turns not yet in a chunk."""

    async def extract_insights(self, turns: Sequence[Turn]) -> list[InsightCandidate]:
        """Long-term facts the user stated about themselves, each with the turns it comes from."""

    async def close(self) -> None:
        """Release connections."""


@runtime_checkable
class Embedder(Protocol):
    """Text to vectors. ``model`` and ``dimensions`` are part of a store's identity."""

    model: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order."""

    async def close(self) -> None:
        """Release connections."""


class ReflectionHandle(BaseModel):
    """A started (or already running) reflection."""

    instance_id: str


class ReflectionState(BaseModel):
    """Where a session's reflection is, as the host reports it."""

    instance_id: str
    name: str
    runtime_status: str
    output: object = None
    created: datetime | None = None
    updated: datetime | None = None


class ForgetProgress(BaseModel):
    """What the host removed of a forgotten user, and what is still there (a follow-up retries until nothing is)."""

    instances_purged: int = Field(0, description="orchestration histories of the user purged")
    entities_deleted: int = Field(0, description="session entities (hot sessions) of the user deleted")
    instances_pending: int = Field(0, description="orchestrations still running, or finished too recently")
    entities_pending: int = Field(0, description="session entities whose deletion has not taken effect yet")

    @property
    def complete(self) -> bool:
        """Whether nothing of the user is left in the host."""
        return not (self.instances_pending or self.entities_pending)


class SessionHost(Protocol):
    """What the host offers the use cases: background work and the hot mirror of sessions.

    On Azure Functions it is the Durable client (session entities, orchestrations); nothing here names Durable.
    Every method returns once the work is durably requested; none waits for the work itself.
    """

    async def read(self, user_id: str, session_id: str) -> HotSession | None:
        """The session's hot state as last persisted, or None."""

    async def start_batch(self, user_id: str, session_id: str, through_seq: int) -> None:
        """Start the background work (indexing, compaction) of the turns up to ``through_seq``; a repeat is a no-op."""

    async def start_reflection(self, user_id: str, session_id: str) -> ReflectionHandle:
        """Start the ended session's reflection, or return the one already started."""

    async def reflection_started(self, user_id: str, session_id: str) -> bool:
        """Whether the session's reflection was ever started (and not purged)."""

    async def reflection_state(self, user_id: str, session_id: str) -> ReflectionState | None:
        """The session's reflection as it is now, or None when none was started."""

    async def start_eviction(self, user_id: str, session_id: str, cutoff: datetime) -> None:
        """Start moving a session out of the hot pool if nothing happened in it after ``cutoff``."""

    async def forget(self, user_id: str, session_ids: Sequence[str], *, wait_seconds: float = 0.0) -> ForgetProgress:
        """Delete the user's hot sessions and purge every background-work history of the user.

        Running work is stopped; the host keeps at it for up to ``wait_seconds`` (at least one pass), and reports
        what is still there as pending. ``session_ids``: sessions the store knew of (hot sessions are also found by
        the user's prefix, whether or not the store still lists them).
        """

    async def purge_finished(self, before: datetime) -> int:
        """Delete histories of background work that finished before ``before``; returns how many."""
