"""The hot session state and its pure transitions.

The session entity holds one ``SessionState`` and applies these functions to it; they do no I/O and never read the
clock (callers pass ``now``), so the entity stays a dispatcher and every rule here is unit-testable.

A turn moves through three places and is in exactly one of them at any time:

* ``recent``: the last K turns, kept verbatim;
* ``pending``: older turns waiting until L of them form a chunk;
* compacted: folded into ``cumulative_summary`` (``seq <= compacted_through``); the turns themselves are in the store.

At most one chunk is compacted at a time (``claimed_through`` marks it), so chunks fold into the cumulative summary
in order even when many turns arrive at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from memory_core.domain import JsonDict, SessionRecord, SessionStatus, Turn
from memory_core.errors import SessionEndedError, SessionNotFoundError

SCHEMA_VERSION = 1

# Turn ids remembered for de-duplication. Retries arrive within seconds, so a window of recent ids is enough here;
# the store's unique (session, turn_id) index is the backstop for anything older.
MAX_TRACKED_TURN_IDS = 1000


class TurnInput(BaseModel):
    """A turn as the caller sends it, before it has a sequence number."""

    model_config = ConfigDict(frozen=True)

    turn_id: str
    user_message: str
    agent_message: str
    timestamp: datetime
    metadata: JsonDict = Field(default_factory=dict)
    received_at: datetime | None = Field(None, description="When the service accepted the turn")


class SessionState(BaseModel):
    """Everything the hot pool holds about one session."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    user_id: str
    session_id: str
    status: Literal["active", "ended"] = "active"
    started_at: datetime
    last_activity: datetime
    turn_count: int = 0
    recent: tuple[Turn, ...] = ()
    pending: tuple[Turn, ...] = ()
    compacted_through: int = 0
    claimed_through: int = 0
    cumulative_summary: str = ""
    chunk_count: int = 0
    turn_ids: dict[str, int] = Field(default_factory=dict)
    restored: bool = False
    ended_at: datetime | None = None


class Compaction(BaseModel):
    """A chunk of pending turns claimed for compaction."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    session_id: str
    index: int
    turns: tuple[Turn, ...]
    previous_summary: str

    @property
    def through_seq(self) -> int:
        """The last sequence number in the chunk."""
        return self.turns[-1].seq


class AppendResult(BaseModel):
    """What an append did: the turn's sequence number, whether it was a repeat, and a chunk to compact if one is due.

    ``turn`` is the stored turn; it is None only for a repeat of a turn already compacted out of the hot state.
    """

    model_config = ConfigDict(frozen=True)

    seq: int
    turn: Turn | None
    duplicate: bool
    compaction: Compaction | None = None


def new_session(user_id: str, session_id: str, now: datetime) -> SessionState:
    """A fresh, empty session."""
    return SessionState(user_id=user_id, session_id=session_id, started_at=now, last_activity=now)


def restore_session(record: SessionRecord, turns: list[Turn], keep_recent: int, now: datetime) -> SessionState:
    """Rebuild the hot state of an evicted session from its store record and its turns.

    ``turns`` must hold at least the not-yet-compacted turns; the ids of all of them are remembered (the last
    ``MAX_TRACKED_TURN_IDS``, as in a hot session), so a retry of an already compacted turn is still recognised.
    """
    if record.status is SessionStatus.ENDED:
        raise SessionNotFoundError(record.user_id, record.session_id)
    known = tuple(sorted(turns, key=lambda t: t.seq))
    open_turns = tuple(t for t in known if t.seq > record.compacted_through)
    split = max(0, len(open_turns) - keep_recent)
    last_seq = max([record.turn_count, record.compacted_through, *(t.seq for t in open_turns)])
    return SessionState(
        user_id=record.user_id,
        session_id=record.session_id,
        started_at=record.started_at,
        last_activity=now,
        turn_count=last_seq,
        recent=open_turns[split:],
        pending=open_turns[:split],
        compacted_through=record.compacted_through,
        claimed_through=record.compacted_through,
        cumulative_summary=record.cumulative_summary,
        chunk_count=record.chunk_count,
        turn_ids=_remember({}, known),
        restored=True,
    )


def append_turn(
    state: SessionState, turn: TurnInput, keep_recent: int, chunk_size: int, now: datetime
) -> tuple[SessionState, AppendResult]:
    """Append one turn: assign the next sequence number, keep the last ``keep_recent`` verbatim, claim a chunk.

    A repeated ``turn_id`` changes nothing and returns the turn first stored under it. An ended session refuses
    turns, except those the service accepted before the end was asked for (they are in flight, not late).
    """
    if state.status == "ended" and not _accepted_before_end(state, turn):
        raise SessionEndedError(state.user_id, state.session_id)
    known = state.turn_ids.get(turn.turn_id)
    if known is not None:
        stored = next((t for t in uncompacted_turns(state) if t.seq == known), None)
        return state, AppendResult(seq=known, turn=stored, duplicate=True)
    seq = state.turn_count + 1
    stored_turn = Turn(
        user_id=state.user_id,
        session_id=state.session_id,
        seq=seq,
        turn_id=turn.turn_id,
        user_message=turn.user_message,
        agent_message=turn.agent_message,
        timestamp=turn.timestamp,
        metadata=turn.metadata,
    )
    recent = (*state.recent, stored_turn)
    overflow = max(0, len(recent) - keep_recent)
    state = state.model_copy(
        update={
            "turn_count": seq,
            "recent": recent[overflow:],
            "pending": (*state.pending, *recent[:overflow]),
            "last_activity": max(state.last_activity, now),
            "turn_ids": _remember(state.turn_ids, (stored_turn,)),
        }
    )
    state, compaction = claim_chunk(state, chunk_size)
    return state, AppendResult(seq=seq, turn=stored_turn, duplicate=False, compaction=compaction)


def claim_chunk(state: SessionState, chunk_size: int, *, flush: bool = False) -> tuple[SessionState, Compaction | None]:
    """Claim the next chunk of pending turns when ``chunk_size`` are waiting and no other chunk is being compacted.

    With ``flush`` (eviction, end of session) a shorter final chunk is claimed too.
    """
    if state.claimed_through > state.compacted_through:
        return state, None
    unclaimed = [t for t in state.pending if t.seq > state.claimed_through]
    if not unclaimed or (len(unclaimed) < chunk_size and not flush):
        return state, None
    chunk = tuple(unclaimed[:chunk_size])
    compaction = Compaction(
        user_id=state.user_id,
        session_id=state.session_id,
        index=state.chunk_count,
        turns=chunk,
        previous_summary=state.cumulative_summary,
    )
    return state.model_copy(update={"claimed_through": chunk[-1].seq}), compaction


def apply_compaction(
    state: SessionState, index: int, through_seq: int, summary: str, chunk_size: int, *, flush: bool = False
) -> tuple[SessionState, Compaction | None]:
    """Fold a compacted chunk into the cumulative summary and claim the next chunk if one is due.

    Applying the same chunk twice (a retried activity) changes nothing.
    """
    if index != state.chunk_count or through_seq <= state.compacted_through:
        return state, None
    state = state.model_copy(
        update={
            "pending": tuple(t for t in state.pending if t.seq > through_seq),
            "compacted_through": through_seq,
            "claimed_through": max(state.claimed_through, through_seq),
            "cumulative_summary": summary,
            "chunk_count": state.chunk_count + 1,
        }
    )
    return claim_chunk(state, chunk_size, flush=flush)


def release_claim(state: SessionState) -> SessionState:
    """Give up an in-flight chunk claim (its compaction failed) so a later append claims it again."""
    return state.model_copy(update={"claimed_through": state.compacted_through})


def end_session(state: SessionState, now: datetime) -> SessionState:
    """Freeze the session: no turn accepted after ``now`` is appended. Ending twice is harmless."""
    if state.status == "ended":
        return state
    return state.model_copy(update={"status": "ended", "ended_at": now, "last_activity": max(state.last_activity, now)})


def _accepted_before_end(state: SessionState, turn: TurnInput) -> bool:
    return state.ended_at is not None and turn.received_at is not None and turn.received_at <= state.ended_at


def idle_since(state: SessionState, cutoff: datetime) -> bool:
    """True when nothing happened in the session after ``cutoff``."""
    return state.last_activity <= cutoff


def uncompacted_turns(state: SessionState) -> tuple[Turn, ...]:
    """Turns not yet folded into the cumulative summary, oldest first."""
    return (*state.pending, *state.recent)


def to_record(state: SessionState, status: SessionStatus) -> SessionRecord:
    """The store's view of the session, for persisting on eviction or end."""
    return SessionRecord(
        user_id=state.user_id,
        session_id=state.session_id,
        status=status,
        started_at=state.started_at,
        last_activity=state.last_activity,
        turn_count=state.turn_count,
        compacted_through=state.compacted_through,
        cumulative_summary=state.cumulative_summary,
        chunk_count=state.chunk_count,
    )


def _remember(turn_ids: dict[str, int], turns: tuple[Turn, ...]) -> dict[str, int]:
    merged = {**turn_ids, **{t.turn_id: t.seq for t in turns}}
    if len(merged) > MAX_TRACKED_TURN_IDS:
        merged = dict(sorted(merged.items(), key=lambda item: item[1])[-MAX_TRACKED_TURN_IDS:])
    return merged
