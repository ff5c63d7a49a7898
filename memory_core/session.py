"""A session's rules: appending turns to its store record, and the hot state its session entity keeps.

Two states, each with pure transitions (no I/O, no clock: callers pass ``now``):

* ``SessionRecord`` (``memory_core.domain``) is the authoritative state. The store keeps it and applies ``append``
  in the same transaction as the turn it writes (SQLite: one transaction; Cosmos DB: a transactional batch with the
  record's ETag), so a turn is stored, numbered and counted at once, or not at all. The other record transitions
  (``end``, ``revive``, ``mark_idle``, ``record_compaction``, ``record_indexed``, ``record_reflected``) are applied
  with ``Store.update_session``, which re-reads and retries when a concurrent write got there first. Each returns
  None when it changes nothing, so a retried step writes nothing.
* ``HotSession`` is the session entity's state: the hot pool's bounded mirror of the session (status, counts, the
  cumulative summary and the recent turns as references) and the compaction claim that makes chunks fold into the
  summary one at a time and in order. Texts live in the store, so the state stays a few kilobytes whatever the
  turns' sizes. Background work keeps it current; the request path never waits for it.

Chunk ``c`` holds the turns ``c*L+1 .. (c+1)*L``; it is due for compaction once ``K`` turns follow it (the last K
turns stay verbatim in the context).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memory_core.domain import JsonDict, SessionRecord, SessionStatus, Turn
from memory_core.errors import ConflictError, SessionEndedError

SCHEMA_VERSION = 2

# Bounds that keep the entity's state and every Durable payload small (the turns themselves never ride Durable).
# Sizes are of the text as JSON with non-ASCII escaped, as the Durable SDK serialises it (an emoji is 12 bytes).
RECENT_REFS = 10  # turn references the hot state keeps
PREVIEW_CHARS = 64  # at most this many characters of the user message kept as a turn's preview...
PREVIEW_BYTES = 96  # ...and at most this many bytes of JSON
MAX_SUMMARY_BYTES = 3_000  # the cumulative summary as JSON (a 250-word English summary is about 1,600)
# Chunks one claim may hold. A claim costs four Durable hops (the compact activity's message and result, the entity's
# operation and answer), each seconds long on Azure Storage's queues (host.json's maxQueuePollingInterval, the
# local host's --durable-latency): a session that fell behind (a burst of turns, a slow model) folds its due chunks
# in claims of up to this many, in order, instead of one chunk per four hops. The bound keeps one activity short with
# a remote model (two summaries per chunk).
MAX_CHUNKS_PER_CLAIM = 8


class TurnInput(BaseModel):
    """A turn as the caller sends it, before the store gives it a sequence number."""

    model_config = ConfigDict(frozen=True)

    turn_id: str
    user_message: str
    agent_message: str
    timestamp: datetime | None = Field(None, description="When the turn happened; None: when it is stored")
    metadata: JsonDict = Field(default_factory=dict)


# -- the store record -----------------------------------------------------------------------------------------------


def new_record(user_id: str, session_id: str, now: datetime) -> SessionRecord:
    """The record of a new, empty, active session."""
    return SessionRecord(
        user_id=user_id, session_id=session_id, status=SessionStatus.ACTIVE, started_at=now, last_activity=now
    )


def append(record: SessionRecord, turn: TurnInput, now: datetime) -> tuple[SessionRecord, Turn]:
    """Number the turn after the last one and count it; an idle (evicted) session becomes active again.

    Raises ``SessionEndedError`` once the session's end was asked for.
    """
    if record.status is SessionStatus.ENDED:
        raise SessionEndedError(record.user_id, record.session_id)
    stored = Turn(
        user_id=record.user_id,
        session_id=record.session_id,
        seq=record.turn_count + 1,
        turn_id=turn.turn_id,
        user_message=turn.user_message,
        agent_message=turn.agent_message,
        timestamp=turn.timestamp or now,
        metadata=turn.metadata,
    )
    updated = record.model_copy(
        update={
            "turn_count": stored.seq,
            "last_activity": max(record.last_activity, now),
            "status": SessionStatus.ACTIVE,
        }
    )
    return updated, stored


def ensure_same_turn(stored: Turn, turn: TurnInput) -> None:
    """Accept a repeated ``turn_id`` only with the content stored under it, else a ``ConflictError`` naming it."""
    field = conflicting_field(stored, turn)
    if field is not None:
        raise ConflictError(
            f"turn_id {turn.turn_id!r} was stored (as turn {stored.seq}) with another {field}; "
            "a turn_id names one turn: send new content under a new turn_id",
            field=field,
        )


def conflicting_field(stored: Turn, turn: TurnInput) -> str | None:
    """The message in which a repeated ``turn_id`` differs from the turn first stored under it, or None.

    The messages are the turn; a repeat's timestamp and metadata are not compared (a client that stamps each attempt
    with its own time still repeats the same turn), and the stored ones stand.
    """
    if stored.user_message != turn.user_message:
        return "user_message"
    if stored.agent_message != turn.agent_message:
        return "agent_message"
    return None


def end(record: SessionRecord, now: datetime) -> SessionRecord | None:
    """Mark the session ended: from now on no turn is accepted. None when it had ended already."""
    if record.status is SessionStatus.ENDED:
        return None
    return record.model_copy(
        update={"status": SessionStatus.ENDED, "ended_at": now, "last_activity": max(record.last_activity, now)}
    )


def revive(record: SessionRecord, now: datetime) -> SessionRecord | None:
    """Bring an evicted (idle) session back into the hot pool. None when it is not idle."""
    if record.status is not SessionStatus.IDLE:
        return None
    return record.model_copy(update={"status": SessionStatus.ACTIVE, "last_activity": max(record.last_activity, now)})


def mark_idle(record: SessionRecord, cutoff: datetime) -> SessionRecord | None:
    """Evict an active session nothing happened in after ``cutoff``. None when it is not active or not idle enough."""
    if record.status is not SessionStatus.ACTIVE or record.last_activity > cutoff:
        return None
    return record.model_copy(update={"status": SessionStatus.IDLE})


def record_compaction(
    record: SessionRecord, index: int, first_seq: int, last_seq: int, summary: str
) -> SessionRecord | None:
    """Fold chunk ``index`` into the record, if it is the next one. None when it was folded already (or is not next)."""
    if record.chunk_count != index or record.compacted_through != first_seq - 1:
        return None
    return record.model_copy(
        update={
            "compacted_through": last_seq,
            "cumulative_summary": bounded_summary(summary),
            "chunk_count": index + 1,
        }
    )


MAX_INDEXED_AHEAD = 64  # windows remembered beyond a gap; a forgotten one is indexed again, never lost


def record_indexed(record: SessionRecord, first_seq: int, last_seq: int) -> SessionRecord | None:
    """Note that turns ``first_seq..last_seq`` are indexed. None when that changes nothing.

    Batches finish in any order, so ``indexed_through`` only moves over contiguous windows: one that finishes beyond
    a gap waits in ``indexed_ahead`` until the gap is filled.
    """
    last_seq = min(last_seq, record.turn_count)
    if last_seq < first_seq or last_seq <= record.indexed_through:
        return None
    through, ahead = record.indexed_through, []
    for first, last in sorted({*record.indexed_ahead, (first_seq, last_seq)}):
        if first <= through + 1:
            through = max(through, last)
        else:
            ahead.append((first, last))
    kept = tuple(ahead[:MAX_INDEXED_AHEAD])
    if through == record.indexed_through and kept == record.indexed_ahead:
        return None
    return record.model_copy(update={"indexed_through": through, "indexed_ahead": kept})


def unindexed_windows(record: SessionRecord) -> list[tuple[int, int]]:
    """The windows of turns not indexed yet: between ``indexed_through``, the windows indexed ahead, and the end."""
    gaps, start = [], record.indexed_through + 1
    for first, last in sorted(record.indexed_ahead):
        if first > start:
            gaps.append((start, first - 1))
        start = max(start, last + 1)
    if start <= record.turn_count:
        gaps.append((start, record.turn_count))
    return gaps


def record_reflected(record: SessionRecord, now: datetime) -> SessionRecord | None:
    """Note that the ended session's reflection finished. None when it was noted already."""
    if record.reflected_at is not None:
        return None
    return record.model_copy(update={"reflected_at": now})


def bounded_summary(text: str) -> str:
    """The summary cut to ``MAX_SUMMARY_BYTES`` of JSON at a word boundary, marked with an ellipsis when cut."""
    return truncate(text, MAX_SUMMARY_BYTES)


def json_size(text: str) -> int:
    """Bytes of ``text`` as a JSON string's content with non-ASCII escaped (what Durable messages carry)."""
    return len(json.dumps(text)) - 2


_ELLIPSIS = "…"


def truncate(text: str, max_bytes: int) -> str:
    """``text`` if it fits ``max_bytes`` of JSON, else its longest prefix that fits with an ellipsis, cut at a word."""
    if json_size(text) <= max_bytes:
        return text
    room = max_bytes - json_size(_ELLIPSIS)
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits
        middle = (low + high + 1) // 2
        if json_size(text[:middle]) <= room:
            low = middle
        else:
            high = middle - 1
    cut = text[:low]
    head, _, _ = cut.rpartition(" ")
    return (head or cut).rstrip() + _ELLIPSIS


def batch_due(seq: int, keep_recent: int, chunk_size: int) -> bool:
    """Whether storing turn ``seq`` makes a chunk due, which is when that turn's batch of background work starts.

    Chunk ``c`` is due once ``K`` turns follow it, at turn ``(c+1)*L + K``: a batch then indexes the turns so far and
    compacts the chunk. Between two batches at most ``L + K - 1`` turns wait for their vectors (full-text search has
    them at once), and at most ``L - 1`` turns are neither verbatim in the context nor in the cumulative summary.
    """
    return seq > keep_recent and (seq - keep_recent) % chunk_size == 0


def batch_window(through_seq: int, keep_recent: int, chunk_size: int) -> tuple[int, int]:
    """The turns (first, last seq) the batch started at turn ``through_seq`` indexes: those since the batch before.

    Windows of successive batches do not overlap, so batches that run at the same time never index a turn twice.
    """
    previous = through_seq - chunk_size
    first = previous + 1 if previous >= keep_recent + chunk_size else 1
    return first, through_seq


def next_batch_end(seq: int, keep_recent: int, chunk_size: int) -> int:
    """The turn whose batch indexes turn ``seq``: the first batch end at or after it."""
    if seq <= keep_recent + chunk_size:
        return keep_recent + chunk_size
    return keep_recent + -(-(seq - keep_recent) // chunk_size) * chunk_size


def batch_lag(keep_recent: int, chunk_size: int) -> int:
    """Unindexed turns that mean a session's batch was missed (it never started, or failed for good)."""
    return keep_recent + chunk_size


def next_chunk(record_or_state: SessionRecord | HotSession, chunk_size: int) -> tuple[int, int]:
    """First and last seq of the next chunk to compact."""
    first = record_or_state.compacted_through + 1
    return first, first + chunk_size - 1


# -- the session entity's hot state ---------------------------------------------------------------------------------


class TurnRef(BaseModel):
    """A turn as the hot state refers to it: its number, id, time and a short preview (never the whole text)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    turn_id: str
    timestamp: datetime
    preview: str = Field(max_length=PREVIEW_CHARS)

    @classmethod
    def of(cls, turn: Turn) -> TurnRef:
        """The reference of a stored turn."""
        words = " ".join(turn.user_message.split())
        preview = truncate(
            words if len(words) <= PREVIEW_CHARS else words[: PREVIEW_CHARS - 1] + _ELLIPSIS, PREVIEW_BYTES
        )
        return cls(seq=turn.seq, turn_id=turn.turn_id, timestamp=turn.timestamp, preview=preview)


class SessionSnapshot(BaseModel):
    """What the store says about a session, as background work reads it for the session entity."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    session_id: str
    status: SessionStatus
    last_activity: datetime
    turn_count: int
    indexed_through: int
    compacted_through: int
    chunk_count: int
    cumulative_summary: str = Field(max_length=MAX_SUMMARY_BYTES)
    recent: tuple[TurnRef, ...] = Field(default=(), max_length=RECENT_REFS)

    @classmethod
    def of(cls, record: SessionRecord, recent: list[Turn]) -> SessionSnapshot:
        """The snapshot of a record and its last turns."""
        return cls(
            user_id=record.user_id,
            session_id=record.session_id,
            status=record.status,
            last_activity=record.last_activity,
            turn_count=record.turn_count,
            indexed_through=record.indexed_through,
            compacted_through=record.compacted_through,
            chunk_count=record.chunk_count,
            cumulative_summary=bounded_summary(record.cumulative_summary),
            recent=tuple(TurnRef.of(t) for t in recent[-RECENT_REFS:]),
        )


class HotSession(BaseModel):
    """The session entity's state. ``claimed_through > compacted_through`` while a chunk is being compacted."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    user_id: str
    session_id: str
    status: Literal["active", "idle", "ended"] = "active"
    last_activity: datetime
    turn_count: int = 0
    indexed_through: int = 0
    compacted_through: int = 0
    claimed_through: int = 0
    chunk_count: int = 0
    cumulative_summary: str = ""
    recent: tuple[TurnRef, ...] = ()


class Claim(BaseModel):
    """Chunks claimed for compaction: ``chunks`` consecutive chunks from ``index``, holding seqs ``first..last``."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    session_id: str
    index: int
    first_seq: int
    last_seq: int
    chunks: int = Field(1, ge=1, le=MAX_CHUNKS_PER_CLAIM)

    @model_validator(mode="after")
    def _whole_chunks(self) -> Claim:
        span = self.last_seq - self.first_seq + 1
        if span < self.chunks or span % self.chunks:
            raise ValueError(f"seqs {self.first_seq}..{self.last_seq} do not split into {self.chunks} equal chunks")
        return self

    def parts(self) -> list[tuple[int, int, int]]:
        """Each claimed chunk as (index, first seq, last seq), in order."""
        size = (self.last_seq - self.first_seq + 1) // self.chunks
        starts = [self.first_seq + n * size for n in range(self.chunks)]
        return [(self.index + n, start, start + size - 1) for n, start in enumerate(starts)]


class CompactionDone(BaseModel):
    """The session's compaction after a compaction step: ``chunk_count`` chunks folded, through ``through_seq``."""

    model_config = ConfigDict(frozen=True)

    chunk_count: int
    through_seq: int
    summary: str = Field(max_length=MAX_SUMMARY_BYTES)


def sync(
    state: HotSession | None, snapshot: SessionSnapshot, keep_recent: int, chunk_size: int
) -> tuple[HotSession, Claim | None]:
    """Bring the hot state up to the store's snapshot (newer news wins) and claim the next chunk if one is due.

    An ended session's state is final: it changes no more and claims nothing.
    """
    if state is None:
        state = HotSession(
            user_id=snapshot.user_id, session_id=snapshot.session_id, last_activity=snapshot.last_activity
        )
    if state.status == "ended":
        return state, None
    update: dict[str, object] = {
        "status": snapshot.status.value,
        "last_activity": max(state.last_activity, snapshot.last_activity),
        "turn_count": max(state.turn_count, snapshot.turn_count),
        "indexed_through": max(state.indexed_through, snapshot.indexed_through),
    }
    if snapshot.turn_count >= state.turn_count:
        update["recent"] = snapshot.recent
    if snapshot.compacted_through > state.compacted_through:
        update |= {
            "compacted_through": snapshot.compacted_through,
            "chunk_count": snapshot.chunk_count,
            "cumulative_summary": snapshot.cumulative_summary,
            "claimed_through": max(state.claimed_through, snapshot.compacted_through),
        }
    return claim_chunk(state.model_copy(update=update), keep_recent, chunk_size)


def claim_chunk(state: HotSession, keep_recent: int, chunk_size: int) -> tuple[HotSession, Claim | None]:
    """Claim the next due chunks (up to ``MAX_CHUNKS_PER_CLAIM``) when no other claim is being compacted."""
    if state.status == "ended" or state.claimed_through > state.compacted_through:
        return state, None
    first, _ = next_chunk(state, chunk_size)
    due = (state.turn_count - keep_recent - first + 1) // chunk_size  # chunks followed by K turns
    if due < 1:
        return state, None
    chunks = min(due, MAX_CHUNKS_PER_CLAIM)
    last = first + chunks * chunk_size - 1
    claim = Claim(
        user_id=state.user_id,
        session_id=state.session_id,
        index=state.chunk_count,
        first_seq=first,
        last_seq=last,
        chunks=chunks,
    )
    return state.model_copy(update={"claimed_through": last}), claim


def apply_compaction(
    state: HotSession, done: CompactionDone, keep_recent: int, chunk_size: int
) -> tuple[HotSession, Claim | None]:
    """Take in a compaction step's outcome and claim the next chunk if one is due. Applying twice changes nothing."""
    if done.through_seq > state.compacted_through:
        state = state.model_copy(
            update={
                "compacted_through": done.through_seq,
                "chunk_count": done.chunk_count,
                "cumulative_summary": done.summary,
                "claimed_through": max(state.claimed_through, done.through_seq),
            }
        )
    if state.claimed_through > state.compacted_through:
        # A claim is in flight beyond what this step folded (its own orchestration reports it): not ours to extend.
        return state, None
    return claim_chunk(state, keep_recent, chunk_size)


def release_claim(state: HotSession) -> HotSession:
    """Give up the in-flight claim (its compaction failed for good) so that later work claims the chunk again."""
    return state.model_copy(update={"claimed_through": state.compacted_through})


def finish(state: HotSession | None, user_id: str, session_id: str, now: datetime) -> HotSession:
    """The final state of an ended session: its status and counts, no text (it is all in the store)."""
    base = state or HotSession(user_id=user_id, session_id=session_id, last_activity=now)
    return HotSession(
        user_id=base.user_id,
        session_id=base.session_id,
        status="ended",
        last_activity=max(base.last_activity, now),
        turn_count=base.turn_count,
        indexed_through=base.indexed_through,
        compacted_through=base.compacted_through,
        claimed_through=base.compacted_through,
        chunk_count=base.chunk_count,
    )
