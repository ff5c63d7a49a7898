"""Reflection: a session summary and long-term insights, consolidated against what the user already has.

Consolidation is deterministic and keyed: every insight is about a ``key`` (``location``, ``preference:coffee``).
A candidate whose key has no active insight is added; one that says the same thing again is a duplicate and writes
nothing; one that refines the active insight updates it in place; one that contradicts it supersedes it: the old
insight is kept, marked superseded, with the time it stopped being true. Ids derive from the content and the
session, so running reflection twice for a session writes nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from memory_core.domain import Chunk, Insight, SessionSummary, Turn, stable_id
from memory_core.ports import ChatModel, InsightCandidate
from memory_core.text import word_parts

SHORT_SESSION_WORDS = 60
FULL_SESSION_WORDS = 200


class ConsolidationPlan(BaseModel):
    """What consolidation decided; ``writes`` are the insights to upsert."""

    added: list[Insight] = Field(default_factory=list)
    updated: list[Insight] = Field(default_factory=list)
    superseded: list[Insight] = Field(default_factory=list)
    duplicates: int = 0

    @property
    def writes(self) -> list[Insight]:
        """Every insight document that changes, in a stable order."""
        return [*self.superseded, *self.updated, *self.added]


def normalize(text: str) -> str:
    """Lower-case words only, for comparing statements."""
    return " ".join(word_parts(text))


def insight_id(user_id: str, key: str, text: str, session_id: str) -> str:
    """Deterministic id of an insight first stated in ``session_id``."""
    return stable_id("insight", user_id, key.lower(), normalize(text), session_id)


def consolidate(
    existing: Sequence[Insight],
    candidates: Sequence[InsightCandidate],
    *,
    user_id: str,
    session_id: str,
    turn_times: dict[int, datetime],
    now: datetime,
) -> ConsolidationPlan:
    """Decide, candidate by candidate, to add, update, supersede or drop as a duplicate.

    ``turn_times`` maps the session's sequence numbers to when they happened: an insight becomes valid when it was
    said, and the one it replaces stops being valid then.
    """
    existing_ids = {i.id for i in existing}
    by_id = {i.id: i for i in existing}
    active = {i.key: i for i in sorted(existing, key=lambda i: i.updated_at) if i.status == "active"}
    changed: dict[str, Insight] = {}
    duplicates = 0
    for candidate in candidates:
        key = candidate.key.strip().lower()
        turns = tuple(sorted({s for s in candidate.source_turns if s in turn_times}))
        said_at = max((turn_times[s] for s in turns), default=now)
        current = active.get(key)
        new_id = insight_id(user_id, key, candidate.text, session_id)
        if (current is not None and normalize(current.text) == normalize(candidate.text)) or new_id in by_id:
            duplicates += 1  # said before, or written by an earlier run of this reflection
            continue
        if current is not None and _refines(current.text, candidate.text):
            current = current.model_copy(
                update={
                    "text": candidate.text,
                    "category": candidate.category,
                    "source_session_id": session_id,
                    "source_turns": turns,
                    "updated_at": now,
                }
            )
            changed[current.id] = active[key] = current
            continue
        if current is not None:
            changed[current.id] = current.model_copy(
                update={"status": "superseded", "valid_to": said_at, "superseded_by": new_id, "updated_at": now}
            )
        changed[new_id] = by_id[new_id] = active[key] = Insight(
            id=new_id,
            user_id=user_id,
            key=key,
            category=candidate.category,
            text=candidate.text,
            source_session_id=session_id,
            source_turns=turns,
            valid_from=said_at,
            created_at=now,
            updated_at=now,
        )
    plan = ConsolidationPlan(duplicates=duplicates)
    for insight in changed.values():
        if insight.id not in existing_ids:
            plan.added.append(insight)
        elif insight.status == "superseded":
            plan.superseded.append(insight)
        else:
            plan.updated.append(insight)
    return plan


def _refines(old: str, new: str) -> bool:
    """True when ``new`` says everything ``old`` said and more ("likes hiking" -> "likes hiking in the Alps")."""
    old_words, new_words = set(normalize(old).split()), set(normalize(new).split())
    return bool(old_words) and old_words < new_words


async def summarize_session(
    chat: ChatModel,
    user_id: str,
    session_id: str,
    chunks: Sequence[Chunk],
    turns: Sequence[Turn],
    threshold: int,
    now: datetime,
) -> SessionSummary | None:
    """The session's summary from its chunk summaries and the turns no chunk covers; None for an empty session.

    Sessions shorter than the reflection threshold get a short summary.
    """
    if not turns and not chunks:
        return None
    covered = max((c.last_seq for c in chunks), default=0)
    rest = [t for t in turns if t.seq > covered]
    turn_count = max([covered, *(t.seq for t in turns)])
    words = FULL_SESSION_WORDS if turn_count >= threshold else SHORT_SESSION_WORDS
    text = await chat.summarize_session(chunks, rest, max_words=words)
    return SessionSummary(
        user_id=user_id,
        session_id=session_id,
        summary=text.strip(),
        turn_count=turn_count,
        first_seq=min([*(c.first_seq for c in chunks), *(t.seq for t in turns)]),
        last_seq=turn_count,
        created_at=now,
    )
