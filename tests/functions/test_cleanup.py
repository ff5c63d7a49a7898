"""The cleanup timer through its registered client function: evictions, stalled work, purges, the run interval.

The timer finds its sessions in the store's session records (no entity is written per turn to keep a pool).
"""

from __future__ import annotations

import importlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from azure.functions.timer import TimerRequest

from memory_core.domain import SessionRecord, SessionStatus
from memory_core.service import MemoryService
from orchestrations import names
from tests.functions.api_client import Api
from tests.functions.taskhub import RecordingClient, TaskHub

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

cleanup = importlib.import_module("orchestrations.cleanup")  # the module: the package's `cleanup` is its blueprint
USER = "alice"
TTL = timedelta(minutes=30)  # SESSION_TTL_MINUTES in conftest


@pytest.fixture(autouse=True)
def small_pool(settings_env: Any) -> None:
    """Room for two hot sessions; set before the service (and its settings) is built."""
    settings_env(MAX_SESSIONS=2)


@pytest.fixture
def cleanup_timer(functions: dict[str, Any]):
    client_function = functions["cleanup_timer"].get_user_function().client_function

    async def fire(hub: TaskHub, past_due: bool = False, client: RecordingClient | None = None) -> None:
        """Fire the timer with the hub's client (or another one on the same hub); on a running hub, wait until what
        it started has run to its end."""
        assert (
            await hub.call(client_function, timer=TimerRequest(past_due=past_due), client=client or hub.client) is None
        )

    return fire


async def hot_sessions(service: MemoryService, now: datetime, idle: dict[str, timedelta], **fields: Any) -> None:
    """Session records as the store keeps them, last active ``idle`` ago."""
    for session_id, age in idle.items():
        record = SessionRecord(
            user_id=USER,
            session_id=session_id,
            status=fields.get("status", SessionStatus.ACTIVE),
            started_at=now - timedelta(hours=2),
            last_activity=now - age,
            turn_count=fields.get("turn_count", 1),
            indexed_through=fields.get("indexed_through", 1),
        )
        await service.store.put_session(record)


def started(client: RecordingClient, orchestrator: str) -> dict[str, dict[str, Any]]:
    """Session id -> input of every instance of ``orchestrator`` started."""
    return {job["session_id"]: job for name, _, job in client.starts if name == orchestrator}


async def test_cleanup_evicts_stale_sessions_and_the_least_recently_used_beyond_capacity(
    cleanup_timer, hub: TaskHub, service: MemoryService
) -> None:
    client = hub.client
    now = datetime.now(UTC)
    await hot_sessions(
        service,
        now,
        {
            "stale": TTL + timedelta(minutes=10),
            "older": timedelta(minutes=20),
            "recent": timedelta(minutes=5),
            "newest": timedelta(minutes=1),
        },
    )
    await hot_sessions(service, now, {"cold": TTL * 3}, status=SessionStatus.IDLE)
    await cleanup_timer(hub)
    evictions = {sid: datetime.fromisoformat(job["cutoff"]) for sid, job in started(client, "evict_session").items()}
    assert set(evictions) == {"stale", "older"}  # 3 fresh sessions for 2 places: the least recently used goes
    assert abs(evictions["stale"] - (now - TTL)) < timedelta(seconds=30)  # stale: idle since the TTL
    assert evictions["older"] == now - timedelta(minutes=20)  # overflow: idle since its last activity
    for _, instance_id, job in client.starts:
        cutoff = datetime.fromisoformat(job["cutoff"]).isoformat()
        assert instance_id == names.eviction_instance_id(USER, job["session_id"], cutoff)
        assert instance_id.startswith(names.user_prefix(USER))


async def test_cleanup_restarts_background_work_that_stalled_a_batch_behind(
    cleanup_timer, hub: TaskHub, service: MemoryService
) -> None:
    now = datetime.now(UTC)
    # L=2: five turns with one indexed is two batches behind; a fresh session may still have its batch running.
    await hot_sessions(service, now, {"stalled": timedelta(minutes=5)}, turn_count=5, indexed_through=1)
    await hot_sessions(service, now, {"busy": timedelta(seconds=10)}, turn_count=5, indexed_through=1)
    await hot_sessions(service, now, {"fine": timedelta(minutes=5)}, turn_count=5, indexed_through=4)
    await cleanup_timer(hub)
    assert started(hub.client, names.BATCH_ORCHESTRATOR) == {
        "stalled": {"user_id": USER, "session_id": "stalled", "through_seq": 4}
    }


async def test_cleanup_starts_the_reflection_an_ended_session_never_got(
    cleanup_timer, hub: TaskHub, service: MemoryService
) -> None:
    now = datetime.now(UTC)
    await hot_sessions(
        service, now, {"lost": timedelta(minutes=5), "running": timedelta(minutes=5)}, status=SessionStatus.ENDED
    )
    await hot_sessions(service, now, {"just-ended": timedelta(seconds=5)}, status=SessionStatus.ENDED)
    running = names.reflection_instance_id(USER, "running")
    hub.put_instance(running, names.REFLECTION_ORCHESTRATOR, "Running", now, {})
    await cleanup_timer(hub)
    assert set(started(hub.client, names.REFLECTION_ORCHESTRATOR)) == {"lost"}


async def test_cleanup_purges_histories_older_than_the_retention(cleanup_timer, hub: TaskHub) -> None:
    now = datetime.now(UTC)
    old, recent, ancient = now - timedelta(days=8), now - timedelta(days=1), now - timedelta(days=15)
    for instance_id, created, status in [
        ("old-completed", old, "Completed"),
        ("old-failed", old, "Failed"),
        ("old-terminated", old, "Terminated"),
        ("old-running", old, "Running"),
        ("old-pending", old, "Pending"),
        ("recent-completed", recent, "Completed"),
        ("ancient-completed", ancient, "Completed"),  # before the window: an earlier purge's
    ]:
        hub.put_instance(instance_id, names.BATCH_ORCHESTRATOR, status, created, {})
    before = set(await hub.instances())
    await cleanup_timer(hub)
    after = set(await hub.instances())
    assert sorted(before - after) == ["old-completed", "old-failed", "old-terminated"]  # purged
    assert sorted(after) == ["ancient-completed", "old-pending", "old-running", "recent-completed"]
    (purge,) = hub.client.purge_filters
    # A sliding window of creation times, as long again as the retention, that ends where the retention does.
    assert abs(purge["to"] - (now - timedelta(days=7))) < timedelta(seconds=30)
    assert purge["to"] - purge["from"] == timedelta(days=7)
    assert set(purge["statuses"]) == {
        OrchestrationRuntimeStatus.Completed,
        OrchestrationRuntimeStatus.Failed,
        OrchestrationRuntimeStatus.Terminated,
    }


async def test_histories_are_purged_at_most_once_an_hour(
    hub: TaskHub, service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    client = hub.client
    host = cleanup.CleanupHost(client, service)
    for minutes, purges in ((0, 1), (1, 1), (59, 1), (60, 2), (61, 2), (121, 3)):
        monkeypatch.setattr(cleanup, "_utcnow", lambda minutes=minutes: now + timedelta(minutes=minutes))
        await host.purge_finished(now + timedelta(minutes=minutes) - timedelta(days=7))
        assert len(client.purge_filters) == purges, minutes
    # The last purge belongs to the worker's service: another timer invocation (another host object) waits as well.
    other = hub.new_client()
    assert await cleanup.CleanupHost(other, service).purge_finished(now) == 0
    assert other.purge_filters == []


async def test_cleanup_does_nothing_within_the_eviction_interval(
    cleanup_timer, hub: TaskHub, service: MemoryService
) -> None:
    client = hub.client
    await hot_sessions(service, datetime.now(UTC), {"stale": TTL * 2})
    await cleanup_timer(hub)
    assert len(client.starts) == 1 and len(client.purge_filters) == 1
    other_instance = hub.new_client()  # another worker's timer, seconds later
    await cleanup_timer(hub, client=other_instance)
    await cleanup_timer(hub)
    assert len(client.starts) == 1 and len(client.purge_filters) == 1
    assert other_instance.starts == [] and other_instance.purge_filters == []


async def test_cleanup_runs_again_once_the_interval_has_passed(
    cleanup_timer, hub: TaskHub, service: MemoryService
) -> None:
    client = hub.client
    now = datetime.now(UTC)
    assert await service.store.claim_cleanup(now - timedelta(seconds=61), 60)
    await hot_sessions(service, now, {"stale": TTL * 2})
    await cleanup_timer(hub)
    assert set(started(client, names.EVICTION_ORCHESTRATOR)) == {"stale"}
    assert len(client.purge_filters) == 1


async def test_cleanup_of_an_empty_pool_only_purges(cleanup_timer, hub: TaskHub) -> None:
    await cleanup_timer(hub)
    assert hub.client.starts == [] and len(hub.client.purge_filters) == 1


async def test_a_past_due_timer_is_logged_and_still_cleans_up(
    cleanup_timer, hub: TaskHub, service: MemoryService, caplog: pytest.LogCaptureFixture
) -> None:
    await hot_sessions(service, datetime.now(UTC), {"stale": TTL * 2})
    with caplog.at_level(logging.WARNING, logger="orchestrations.cleanup"):
        await cleanup_timer(hub, past_due=True)
    assert "Cleanup timer is past due" in caplog.text
    assert set(started(hub.client, names.EVICTION_ORCHESTRATOR)) == {"stale"}


async def test_an_idle_session_is_evicted_to_the_store_and_restored_later(
    cleanup_timer, functions: dict[str, Any], running_hub: TaskHub, service: MemoryService
) -> None:
    api = Api(functions, running_hub)
    assert (await api.post("start_session", {"user_id": USER, "session_id": "s1", "restore": False})).status == 200
    for n in (1, 2, 3, 4, 5):  # K=2, L=2: turns 1-2 are compacted, turn 5 is not indexed yet
        body = {"user_id": USER, "session_id": "s1", "user_message": f"m{n}", "agent_message": "ok", "turn_id": f"t{n}"}
        assert (await api.post("store_turn", body)).status == 201
    key = names.session_key(USER, "s1")
    assert await running_hub.entity_state(names.SESSION_ENTITY, key) is not None
    # Forty minutes pass without a turn.
    record = await service.store.get_session(USER, "s1")
    idle_since = datetime.now(UTC) - TTL - timedelta(minutes=10)
    await service.store.put_session(record.model_copy(update={"last_activity": idle_since}))

    await cleanup_timer(running_hub)
    (eviction,) = [i for i in (await running_hub.instances()).values() if i.name == names.EVICTION_ORCHESTRATOR]
    assert eviction.runtime_status.value == "Completed" and eviction.output == {"evicted": True}
    assert await running_hub.entity_state(names.SESSION_ENTITY, key) is None
    evicted = await service.store.get_session(USER, "s1")
    assert evicted.status is SessionStatus.IDLE and evicted.turn_count == 5 and evicted.indexed_through == 5
    assert evicted.compacted_through == 2 and evicted.cumulative_summary == record.cumulative_summary != ""

    restored = await api.post("start_session", {"user_id": USER, "session_id": "s1"})
    assert restored.status == 200
    assert restored.body["restored"] is True and restored.body["turn_count"] == 5
    assert restored.body["cumulative_summary"] == record.cumulative_summary
    assert [m["content"] for m in restored.body["active_context"] if m["role"] == "user"] == ["m4", "m5"]
