"""The cleanup timer through its registered client function: evictions, history purges, and the run interval."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from azure.functions.timer import TimerRequest

from memory_core.domain import SessionStatus
from memory_core.service import MemoryService
from orchestrations import names
from tests.functions.api_client import Api
from tests.functions.durable import FakeDurableClient, Instance

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

USER = "alice"
TTL = timedelta(minutes=30)  # SESSION_TTL_MINUTES in conftest


@pytest.fixture(autouse=True)
def small_pool(settings_env: Any) -> None:
    """Room for two hot sessions; set before the service (and its settings) is built."""
    settings_env(MAX_SESSIONS=2)


@pytest.fixture
def cleanup_timer(functions: dict[str, Any]):
    client_function = functions["cleanup_timer"].get_user_function().client_function

    async def fire(client: FakeDurableClient, past_due: bool = False) -> None:
        assert await client_function(timer=TimerRequest(past_due=past_due), client=client) is None

    return fire


def entry(session_id: str, idle: timedelta, now: datetime) -> dict[str, Any]:
    return {
        "user_id": USER,
        "session_id": session_id,
        "started_at": (now - timedelta(hours=2)).isoformat(),
        "last_activity": (now - idle).isoformat(),
        "turn_count": 1,
        "persisted_through": 1,
    }


def hot_pool(client: FakeDurableClient, now: datetime, idle: dict[str, timedelta], **fields: Any) -> None:
    sessions = {names.session_key(USER, sid): entry(sid, age, now) for sid, age in idle.items()}
    client.set_entity_state(names.POOL_ENTITY, names.POOL_KEY, {"schema_version": 1, "sessions": sessions, **fields})


def evictions(client: FakeDurableClient) -> dict[str, datetime]:
    """Session id -> cutoff of every eviction started."""
    return {
        job["session_id"]: datetime.fromisoformat(job["cutoff"])
        for name, _, job in client.starts
        if name == names.EVICTION_ORCHESTRATOR
    }


async def test_cleanup_evicts_stale_sessions_and_the_least_recently_used_beyond_capacity(
    cleanup_timer, client: FakeDurableClient
) -> None:
    now = datetime.now(UTC)
    hot_pool(
        client,
        now,
        {
            "stale": TTL + timedelta(minutes=10),
            "older": timedelta(minutes=20),
            "recent": timedelta(minutes=5),
            "newest": timedelta(minutes=1),
        },
    )
    await cleanup_timer(client)
    started = evictions(client)
    assert set(started) == {"stale", "older"}  # 3 fresh sessions for 2 places: the least recently used goes
    assert abs(started["stale"] - (now - TTL)) < timedelta(seconds=30)  # stale: idle since the TTL
    assert started["older"] == now - timedelta(minutes=20)  # overflow: idle since its last activity
    for _, instance_id, job in client.starts:
        assert instance_id == names.eviction_instance_id(USER, job["session_id"], job["cutoff"])
        assert instance_id.startswith(names.user_prefix(USER))
    last_cleanup = client.entity_state(names.POOL_ENTITY, names.POOL_KEY)["last_cleanup"]
    assert abs(datetime.fromisoformat(last_cleanup) - now) < timedelta(seconds=30)


async def test_cleanup_purges_histories_older_than_the_retention(cleanup_timer, client: FakeDurableClient) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=8), now - timedelta(days=1)
    for instance_id, created, status in [
        ("old-completed", old, "Completed"),
        ("old-failed", old, "Failed"),
        ("old-terminated", old, "Terminated"),
        ("old-running", old, "Running"),
        ("old-pending", old, "Pending"),
        ("recent-completed", recent, "Completed"),
    ]:
        client.instances[instance_id] = Instance(names.INGEST_ORCHESTRATOR, instance_id, {}, created, status)
    await cleanup_timer(client)
    assert sorted(client.purged) == ["old-completed", "old-failed", "old-terminated"]
    assert sorted(client.instances) == ["old-pending", "old-running", "recent-completed"]
    (purge,) = client.purge_filters
    assert abs(purge["to"] - (now - timedelta(days=7))) < timedelta(seconds=30)
    assert set(purge["statuses"]) == {
        OrchestrationRuntimeStatus.Completed,
        OrchestrationRuntimeStatus.Failed,
        OrchestrationRuntimeStatus.Terminated,
    }


async def test_cleanup_does_nothing_within_the_eviction_interval(cleanup_timer, client: FakeDurableClient) -> None:
    now = datetime.now(UTC)
    hot_pool(client, now, {"stale": TTL * 2})
    await cleanup_timer(client)
    assert len(client.starts) == 1 and len(client.purge_filters) == 1
    pool = client.entity_state(names.POOL_ENTITY, names.POOL_KEY)

    await cleanup_timer(client)  # the next tick, seconds later
    assert len(client.starts) == 1 and len(client.purge_filters) == 1
    assert client.entity_state(names.POOL_ENTITY, names.POOL_KEY) == pool


async def test_cleanup_runs_again_once_the_interval_has_passed(cleanup_timer, client: FakeDurableClient) -> None:
    now = datetime.now(UTC)
    hot_pool(client, now, {"stale": TTL * 2}, last_cleanup=(now - timedelta(seconds=61)).isoformat())
    await cleanup_timer(client)
    assert set(evictions(client)) == {"stale"}
    assert len(client.purge_filters) == 1


async def test_cleanup_of_an_empty_pool_only_purges(cleanup_timer, client: FakeDurableClient) -> None:
    await cleanup_timer(client)
    assert client.starts == [] and len(client.purge_filters) == 1


async def test_a_past_due_timer_is_logged_and_still_cleans_up(
    cleanup_timer, client: FakeDurableClient, caplog: pytest.LogCaptureFixture
) -> None:
    hot_pool(client, datetime.now(UTC), {"stale": TTL * 2})
    with caplog.at_level(logging.WARNING, logger="orchestrations.cleanup"):
        await cleanup_timer(client, past_due=True)
    assert "Cleanup timer is past due" in caplog.text
    assert set(evictions(client)) == {"stale"}


async def test_an_idle_session_is_evicted_to_the_store_and_restored_later(
    cleanup_timer, functions: dict[str, Any], running_client: FakeDurableClient, service: MemoryService
) -> None:
    api = Api(functions, running_client)
    assert (await api.post("start_session", {"user_id": USER, "session_id": "s1", "restore": False})).status == 200
    for n in (1, 2, 3, 4):  # K=2, L=2: turns 1-2 are compacted
        body = {"user_id": USER, "session_id": "s1", "user_message": f"m{n}", "agent_message": "ok", "turn_id": f"t{n}"}
        assert (await api.post("store_turn", body)).status == 202
    # Forty minutes pass without a turn.
    key = names.session_key(USER, "s1")
    idle_since = (datetime.now(UTC) - TTL - timedelta(minutes=10)).isoformat()
    state = running_client.entity_state(names.SESSION_ENTITY, key)
    running_client.set_entity_state(names.SESSION_ENTITY, key, {**state, "last_activity": idle_since})
    pool = running_client.entity_state(names.POOL_ENTITY, names.POOL_KEY)
    pool["sessions"][key]["last_activity"] = idle_since
    running_client.set_entity_state(names.POOL_ENTITY, names.POOL_KEY, pool)

    await cleanup_timer(running_client)
    (eviction,) = [i for i in running_client.instances.values() if i.name == names.EVICTION_ORCHESTRATOR]
    assert eviction.status == "Completed" and eviction.output == {"evicted": True, "turn_count": 4}
    assert running_client.entity_state(names.SESSION_ENTITY, key) is None
    assert running_client.entity_state(names.POOL_ENTITY, names.POOL_KEY)["sessions"] == {}
    record = await service.store.get_session(USER, "s1")
    assert record is not None and record.status is SessionStatus.IDLE and record.turn_count == 4
    assert record.compacted_through == 2 and record.cumulative_summary == state["cumulative_summary"] != ""

    restored = await api.post("start_session", {"user_id": USER, "session_id": "s1"})
    assert restored.status == 200
    assert restored.body["restored"] is True and restored.body["turn_count"] == 4
    assert restored.body["cumulative_summary"] == state["cumulative_summary"]
    assert [m["content"] for m in restored.body["active_context"] if m["role"] == "user"] == ["m3", "m4"]
