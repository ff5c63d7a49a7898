from datetime import UTC, datetime, timedelta

from memory_core.pool import PoolEntry, PoolState, eviction_candidates, remove, stats, touch

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=30)


def entry(session: str, idle_minutes: float, turns: int = 3, persisted: int = 3) -> PoolEntry:
    return PoolEntry(
        user_id="u",
        session_id=session,
        started_at=T0 - timedelta(hours=2),
        last_activity=T0 - timedelta(minutes=idle_minutes),
        turn_count=turns,
        persisted_through=persisted,
    )


def pool_of(*entries: PoolEntry) -> PoolState:
    state = PoolState()
    for e in entries:
        state = touch(state, e.session_id, e)
    return state


def test_touch_never_moves_activity_backwards():
    state = touch(pool_of(entry("a", 1, turns=5)), "a", entry("a", 10, turns=2))
    assert state.sessions["a"].last_activity == T0 - timedelta(minutes=1)
    assert state.sessions["a"].turn_count == 5


def test_candidates_are_stale_sessions_then_least_recently_used_beyond_capacity():
    state = pool_of(entry("stale", 45), entry("old", 20), entry("mid", 10), entry("new", 1))
    assert eviction_candidates(state, T0, TTL, max_sessions=10) == ["stale"]
    assert eviction_candidates(state, T0, TTL, max_sessions=2) == ["stale", "old"]
    assert eviction_candidates(PoolState(), T0, TTL, max_sessions=1) == []


def test_stats_report_the_guides_fields():
    state = pool_of(entry("a", 10), entry("b", 20, turns=7, persisted=5))
    figures = stats(state, T0, TTL, max_sessions=1000)
    assert figures.total_sessions == 2 and figures.dirty_sessions == 1
    assert figures.utilization == 0.002 and figures.ttl_seconds == 1800
    assert figures.avg_age_seconds == 900 and figures.oldest_age_seconds == 1200
    empty = stats(remove(remove(state, "a"), "b"), T0, TTL, max_sessions=1000)
    assert (empty.total_sessions, empty.avg_age_seconds, empty.oldest_age_seconds) == (0, 0.0, 0.0)
