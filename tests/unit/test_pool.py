from datetime import UTC, datetime, timedelta

from memory_core.pool import stats
from memory_core.ports import SessionFigures

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=30)


def test_stats_of_an_empty_pool():
    figures = stats(SessionFigures(), T0, TTL, max_sessions=1000)
    assert figures.model_dump() == {
        "total_sessions": 0,
        "dirty_sessions": 0,
        "max_capacity": 1000,
        "utilization": 0.0,
        "ttl_seconds": 1800.0,
        "avg_age_seconds": 0.0,
        "oldest_age_seconds": 0.0,
    }


def test_stats_report_size_lag_and_idle_ages():
    figures = SessionFigures(
        count=4, lagging=1, oldest_activity=T0 - timedelta(minutes=20), mean_activity=T0 - timedelta(minutes=5)
    )
    result = stats(figures, T0, TTL, max_sessions=8)
    assert (result.total_sessions, result.dirty_sessions, result.utilization) == (4, 1, 0.5)
    assert (result.avg_age_seconds, result.oldest_age_seconds) == (300.0, 1200.0)


def test_ages_are_never_negative():
    result = stats(SessionFigures(count=1, oldest_activity=T0 + timedelta(seconds=3), mean_activity=T0), T0, TTL, 10)
    assert result.oldest_age_seconds == 0.0
