"""Domain model: what the service remembers, independent of API schemas and of stored-document shapes.

Every class is a frozen pydantic model so it crosses Durable boundaries as plain JSON
(``model_dump(mode="json")`` out, ``model_validate`` in).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JsonDict = dict[str, Any]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemoryKind(StrEnum):
    """What a searchable memory item is."""

    TURN = "turn"
    CHUNK = "chunk"
    SUMMARY = "summary"
    INSIGHT = "insight"


class SessionStatus(StrEnum):
    """Lifecycle of a session as the store knows it."""

    ACTIVE = "active"  # hot: in the hot pool (counted by /stats, evicted when idle)
    IDLE = "idle"  # evicted from the hot pool; cold-restorable, and a new turn makes it active again
    ENDED = "ended"  # its end was asked: no turn is accepted any more; reflection runs or ran; never restored


class Turn(_Frozen):
    """One exchange: a user message and the agent's reply. Never split."""

    user_id: str
    session_id: str
    seq: int = Field(ge=1, description="1-based position of the turn in its session")
    turn_id: str
    user_message: str
    agent_message: str
    timestamp: datetime
    metadata: JsonDict = Field(default_factory=dict)

    def text(self) -> str:
        """The turn as one searchable text."""
        return f"User: {self.user_message}\nAssistant: {self.agent_message}"


class Chunk(_Frozen):
    """L consecutive turns compacted into a summary (the unit that feeds the cumulative summary)."""

    user_id: str
    session_id: str
    index: int = Field(ge=0)
    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=1)
    summary: str
    timestamp: datetime

    @property
    def id(self) -> str:
        """Deterministic id: one chunk per (user, session, index)."""
        return stable_id("chunk", self.user_id, self.session_id, str(self.index))


class SessionRecord(_Frozen):
    """What the store keeps about a session: its status, its turn sequence, and how far background work got.

    The store updates it in the same transaction as every turn it appends, so it is the session's authoritative
    state: the request path reads nothing else.
    """

    user_id: str
    session_id: str
    status: SessionStatus
    started_at: datetime
    last_activity: datetime
    turn_count: int = Field(default=0, ge=0, description="seq of the last turn appended")
    compacted_through: int = Field(default=0, ge=0, description="last seq folded into cumulative_summary")
    cumulative_summary: str = ""
    chunk_count: int = Field(default=0, ge=0)
    indexed_through: int = Field(
        default=0, ge=0, description="every turn up to this seq is indexed (has its vector when there is an embedder)"
    )
    indexed_ahead: tuple[tuple[int, int], ...] = Field(
        default=(), description="windows (first, last seq) indexed beyond a gap after indexed_through"
    )
    ended_at: datetime | None = None
    reflected_at: datetime | None = Field(None, description="when the reflection of the ended session finished")


class SessionSummary(_Frozen):
    """The reflection's summary of one whole session."""

    user_id: str
    session_id: str
    summary: str
    turn_count: int = Field(ge=0)
    first_seq: int = Field(ge=0)
    last_seq: int = Field(ge=0)
    created_at: datetime

    @property
    def id(self) -> str:
        """Deterministic id: one summary per session."""
        return stable_id("summary", self.user_id, self.session_id)


InsightStatus = Literal["active", "superseded"]


class Insight(_Frozen):
    """A long-term fact about the user, with its provenance and validity interval."""

    id: str
    user_id: str
    key: str = Field(description="what the insight is about, e.g. 'location' or 'preference:coffee'")
    category: str
    text: str
    source_session_id: str
    source_turns: tuple[int, ...] = ()
    status: InsightStatus = "active"
    valid_from: datetime
    valid_to: datetime | None = None
    superseded_by: str | None = None
    created_at: datetime
    updated_at: datetime


class SearchHit(_Frozen):
    """One ranked memory item with its provenance."""

    kind: MemoryKind
    id: str
    text: str
    score: float
    session_id: str | None = None
    seqs: tuple[int, ...] = ()
    timestamp: datetime | None = None
    excerpt: bool = False  # text is a passage of the stored item (cut to fit a budget)


class ItemFilter(_Frozen):
    """What a search keeps besides its kinds; a field left None keeps everything.

    Times compare with each item's ``timestamp`` as search returns it: a turn's own time, a chunk's last turn, a
    summary's creation, an insight's last update. ``since`` is inclusive, ``until`` exclusive. ``as_of`` is what the
    memory held at that time: insights valid then (``valid_from <= as_of < valid_to``, so one superseded later is
    found and one learned later is not) and other items whose timestamp is at or before it.
    """

    session_ids: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    as_of: datetime | None = None

    @property
    def restricts(self) -> bool:
        """Whether any field keeps less than everything."""
        return any(value is not None for value in (self.session_ids, self.since, self.until, self.as_of))


def stable_id(*parts: str) -> str:
    """A deterministic id from its parts, so replays and retries write the same documents."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"{parts[0]}-{digest[:32]}"


def turn_doc_id(user_id: str, session_id: str, turn_id: str) -> str:
    """Deterministic id of a stored turn: one turn per ``turn_id`` in a session, however late a repeat comes."""
    return stable_id("turn", user_id, session_id, turn_id)
