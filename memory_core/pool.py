"""The hot pool's figures: the guide's ``/stats``, computed from the store's session records.

A session is hot while its record is ``active``: from its start (or its cold restore) until the cleanup timer evicts
it or it ends. Nothing is written to one shared place per turn; the figures are aggregates over the records.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from memory_core.ports import SessionFigures


class PoolStats(BaseModel):
    """The guide's ``/stats`` figures."""

    total_sessions: int
    dirty_sessions: int
    max_capacity: int
    utilization: float
    ttl_seconds: float
    avg_age_seconds: float
    oldest_age_seconds: float


def _age(now: datetime, then: datetime | None) -> float:
    return round(max(0.0, (now - then).total_seconds()), 3) if then is not None else 0.0


def stats(figures: SessionFigures, now: datetime, ttl: timedelta, max_sessions: int) -> PoolStats:
    """The pool's size, how many sessions have background work a batch or more behind, and their idle ages."""
    return PoolStats(
        total_sessions=figures.count,
        dirty_sessions=figures.lagging,
        max_capacity=max_sessions,
        utilization=round(figures.count / max_sessions, 6),
        ttl_seconds=ttl.total_seconds(),
        avg_age_seconds=_age(now, figures.mean_activity),
        oldest_age_seconds=_age(now, figures.oldest_activity),
    )
