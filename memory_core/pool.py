"""The hot pool's bookkeeping: which sessions are hot, how active, and which to evict.

The pool is one small record per hot session (the session entity holds the session itself). Its transitions are
pure; the pool entity applies them, ``/stats`` reports them, and the cleanup timer picks eviction candidates from
them: sessions idle longer than the TTL, then the least recently used beyond ``MAX_SESSIONS``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

POOL_SCHEMA_VERSION = 1


class PoolEntry(BaseModel):
    """One hot session as the pool sees it."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    session_id: str
    started_at: datetime
    last_activity: datetime
    turn_count: int = 0
    persisted_through: int = 0


class PoolState(BaseModel):
    """Every hot session, keyed by session entity key."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = POOL_SCHEMA_VERSION
    sessions: dict[str, PoolEntry] = Field(default_factory=dict)
    last_cleanup: datetime | None = None


class PoolStats(BaseModel):
    """The guide's ``/stats`` figures."""

    total_sessions: int
    dirty_sessions: int
    max_capacity: int
    utilization: float
    ttl_seconds: float
    avg_age_seconds: float
    oldest_age_seconds: float


def touch(pool: PoolState, key: str, entry: PoolEntry) -> PoolState:
    """Record activity of a hot session; older news never overwrites newer."""
    current = pool.sessions.get(key)
    if current is not None:
        entry = entry.model_copy(
            update={
                "started_at": min(current.started_at, entry.started_at),
                "last_activity": max(current.last_activity, entry.last_activity),
                "turn_count": max(current.turn_count, entry.turn_count),
                "persisted_through": max(current.persisted_through, entry.persisted_through),
            }
        )
    return pool.model_copy(update={"sessions": {**pool.sessions, key: entry}})


def remove(pool: PoolState, key: str) -> PoolState:
    """Forget a session that left the hot pool (evicted, ended or deleted)."""
    if key not in pool.sessions:
        return pool
    return pool.model_copy(update={"sessions": {k: v for k, v in pool.sessions.items() if k != key}})


def eviction_candidates(pool: PoolState, now: datetime, ttl: timedelta, max_sessions: int) -> list[str]:
    """Keys to evict: every session idle longer than ``ttl``, then the least recently used beyond ``max_sessions``."""
    by_age = sorted(pool.sessions.items(), key=lambda item: item[1].last_activity)
    stale = [key for key, entry in by_age if now - entry.last_activity > ttl]
    remaining = [key for key, _ in by_age if key not in set(stale)]
    overflow = remaining[: max(0, len(remaining) - max_sessions)]
    return stale + overflow


def stats(pool: PoolState, now: datetime, ttl: timedelta, max_sessions: int) -> PoolStats:
    """The pool's size, dirtiness (turns not yet written to the store) and idle ages."""
    ages = [max(0.0, (now - e.last_activity).total_seconds()) for e in pool.sessions.values()]
    total = len(pool.sessions)
    return PoolStats(
        total_sessions=total,
        dirty_sessions=sum(1 for e in pool.sessions.values() if e.turn_count > e.persisted_through),
        max_capacity=max_sessions,
        utilization=round(total / max_sessions, 6),
        ttl_seconds=ttl.total_seconds(),
        avg_age_seconds=round(sum(ages) / total, 3) if total else 0.0,
        oldest_age_seconds=round(max(ages), 3) if ages else 0.0,
    )
