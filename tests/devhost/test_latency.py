"""`--durable-latency`: every Durable hop waits for the queue latency, as on Azure Storage, and nothing is lost.

Timing is asserted as lower bounds only (a hop is never faster than the latency), from the timestamps the host
records; "not yet" checks are made only when the request was answered within the latency.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest
import pytest_asyncio

from devhost import DevHost, HostOptions
from devhost.__main__ import parse_args
from devhost.config import SettingError
from devhost.history import EventType, parse_time
from devhost.latency import QueueLatency, milliseconds
from devhost.store import Store, database_path
from tests.devhost.conftest import APP_MODULE, NEVER, HostProcess, eventually, make_script_root, wait_for
from tests.devhost.test_process import durable_client

TOLERANCE = 0.002  # history timestamps are cut to microseconds; the clock is the same

StartHost = Callable[..., Awaitable[DevHost]]


@pytest_asyncio.fixture(loop_scope="session")
async def start_host(tmp_path: Path) -> AsyncIterator[StartHost]:
    """Starts in-process hosts with a latency (each on its own state directory); stops them at the end."""
    started: list[DevHost] = []

    async def start(latency_ms: float, jitter_ms: float | None = None, seed: int | None = None) -> DevHost:
        root = make_script_root(
            tmp_path / f"latent-{len(started)}", {"SAMPLE_HUB": "LatencyTests", "SAMPLE_SCHEDULE": NEVER}
        )
        options = HostOptions(
            app=APP_MODULE,
            script_root=root,
            state_dir=root / "state",
            port=0,
            durable_latency_ms=latency_ms,
            durable_jitter_ms=jitter_ms,
            durable_seed=seed,
        )
        host = DevHost(options)
        await host.start()
        started.append(host)
        return host

    yield start
    for host in started:
        await host.stop()


def client_of(host: DevHost) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(host.client_binding)


def event_times(host: DevHost, instance_id: str, event_type: EventType) -> list[float]:
    """Epoch seconds of the raw history's events of one type, in order."""
    history = host._store.load_history(instance_id)  # the raw history (with OrchestratorStarted) is under test
    return [parse_time(e["Timestamp"]).timestamp() for e in history if e["EventType"] == event_type]


async def read_state(client: df.DurableOrchestrationClient, name: str, key: str) -> Any:
    state = await client.read_entity_state(df.EntityId(name, key))
    return state.entity_state if state.entity_exists else None


# ---------------------------------------------------------------------- hops


async def test_each_hop_of_a_chain_of_activities_waits_for_the_latency(start_host: StartHost):
    latency = 0.1
    host = await start_host(100, 50, seed=1)
    client = client_of(host)
    n = 3
    instance_id = await client.start_new("chain", None, n)
    status = await wait_for(client, instance_id)
    assert status.runtime_status.value == "Completed"
    assert status.output == ["Hello 0", "Hello 1", "Hello 2"]

    (created,) = event_times(host, instance_id, EventType.EXECUTION_STARTED)
    episodes = event_times(host, instance_id, EventType.ORCHESTRATOR_STARTED)
    scheduled = event_times(host, instance_id, EventType.TASK_SCHEDULED)
    completed = event_times(host, instance_id, EventType.TASK_COMPLETED)  # when each activity had run
    (finished,) = event_times(host, instance_id, EventType.EXECUTION_COMPLETED)
    assert len(episodes) == n + 1 and len(scheduled) == len(completed) == n
    hops = [episodes[0] - created]  # the start message
    for i in range(n):
        hops.append(completed[i] - scheduled[i])  # the work item: the activity does not start before the latency
        hops.append(episodes[i + 1] - completed[i])  # its result
    assert len(hops) == 2 * n + 1
    assert min(hops) >= latency - TOLERANCE, hops
    assert finished - created >= (2 * n + 1) * latency - TOLERANCE


async def test_a_start_is_pending_until_its_message_is_delivered(start_host: StartHost):
    latency = 0.3
    host = await start_host(300, 0)
    client = client_of(host)
    sent = time.time()
    instance_id = await client.start_new("wait_event", None, None)
    status = await client.get_status(instance_id)
    listed = await client.get_status_all()
    if time.time() - sent < latency:  # start_new, get_status and the list answered at once, from committed rows
        assert status.runtime_status.value == "Pending"
        assert [s.runtime_status.value for s in listed if s.instance_id == instance_id] == ["Pending"]
    await wait_for(client, instance_id, {"Running"})
    first_episode = event_times(host, instance_id, EventType.ORCHESTRATOR_STARTED)[0]
    assert first_episode - sent >= latency - TOLERANCE
    await client.terminate(instance_id, "done")


async def test_terminate_is_acknowledged_at_once_and_applied_after_the_latency(start_host: StartHost):
    latency = 0.3
    host = await start_host(300, 0)
    client = client_of(host)
    instance_id = await client.start_new("wait_event", None, None)
    await wait_for(client, instance_id, {"Running"})
    sent = time.time()
    await client.terminate(instance_id, "enough")
    status = await client.get_status(instance_id)
    if time.time() - sent < latency:
        assert status.runtime_status.value == "Running"
    status = await wait_for(client, instance_id)
    assert status.runtime_status.value == "Terminated"
    (terminated,) = event_times(host, instance_id, EventType.EXECUTION_TERMINATED)
    assert terminated - sent >= latency - TOLERANCE


async def test_read_entity_state_returns_the_last_committed_state(start_host: StartHost):
    latency = 0.3
    host = await start_host(300, 0)
    client = client_of(host)
    sent = time.time()
    await client.signal_entity(df.EntityId("counter", "read"), "add", 5)
    early = await read_state(client, "counter", "read")
    if time.time() - sent < latency:
        assert early is None  # the signal is queued, not applied
    assert await eventually(lambda: read_state(client, "counter", "read")) == 5
    [(_, _, _, applied_at)] = host._store.list_entities("counter")
    assert applied_at - sent >= latency - TOLERANCE

    sent = time.time()
    await client.signal_entity(df.EntityId("counter", "read"), "add", 1)
    early = await read_state(client, "counter", "read")
    if time.time() - sent < latency:
        assert early == 5  # the last persisted state, without the operation in flight

    async def applied() -> bool:
        return await read_state(client, "counter", "read") == 6

    await eventually(applied)


async def test_a_timer_fires_no_sooner_than_its_time_plus_the_latency(start_host: StartHost):
    host = await start_host(200, 100)
    client = client_of(host)
    instance_id = await client.start_new("timer_then_now", None, 0.2)
    status = await wait_for(client, instance_id)
    assert status.runtime_status.value == "Completed"
    assert status.output["woke_at"] - status.output["fire_at"] >= 0.2 - TOLERANCE


async def test_events_and_entity_calls_complete(start_host: StartHost):
    host = await start_host(50, 50)
    client = client_of(host)
    waiting = await client.start_new("wait_event", None, None)
    await client.raise_event(waiting, "go", "early")  # may arrive before the start: it waits for it
    caller = await client.start_new("call_bad_operation", None, "latent")  # call_entity: operation and response
    assert (await wait_for(client, waiting)).output == {"data": '"early"'}
    assert (await wait_for(client, caller)).output == {"error": "unknown operation explode"}


# ---------------------------------------------------------------------- entity ordering


async def test_operations_from_one_sender_to_one_entity_keep_their_order(start_host: StartHost):
    host = await start_host(20, 500, seed=7)  # jitter far above the time between two sends
    client = client_of(host)
    client_keys = [f"client-{i}" for i in range(8)]
    for key in client_keys:
        await client.signal_entity(df.EntityId("journal", key), "append", "first")
        await client.signal_entity(df.EntityId("journal", key), "append", "second")
    orchestration_keys = [f"orchestration-{i}" for i in range(3)]
    for key in orchestration_keys:  # one episode sends the six signals
        await client.start_new("signal_journal", None, {"key": key, "items": list(range(6))})

    async def journals() -> dict[str, Any] | None:
        found = {key: await read_state(client, "journal", key) for key in client_keys + orchestration_keys}
        return (
            found
            if all(found[key] and len(found[key]) == 2 for key in client_keys)
            and all(found[key] and len(found[key]) == 6 for key in orchestration_keys)
            else None
        )

    found = await eventually(journals)
    for key in client_keys:
        assert found[key] == ["first", "second"], key
    for key in orchestration_keys:
        assert found[key] == [0, 1, 2, 3, 4, 5], key


async def test_operations_from_different_senders_may_overtake_each_other(start_host: StartHost):
    host = await start_host(20, 400, seed=11)
    client = client_of(host)
    senders = 6
    for attempt in range(5):
        key = f"race-{attempt}"
        for sender in range(senders):  # each orchestration is its own sender
            await client.start_new("signal_journal_stamped", None, {"key": key, "sender": sender})

        async def complete(key: str = key) -> list[dict[str, Any]] | None:
            entries = await read_state(client, "journal", key)
            return entries if entries and len(entries) == senders else None

        applied = await eventually(complete)
        assert sorted(entry["sender"] for entry in applied) == list(range(senders))  # none lost, none twice
        if applied != sorted(applied, key=lambda entry: entry["sent"]):
            return  # an operation sent later was applied first
    pytest.fail("no operation from one sender overtook another sender's in 5 tries")


# ---------------------------------------------------------------------- crash


async def test_delayed_work_survives_kill_9_and_restart(tmp_path: Path, host_processes: list[HostProcess]):
    hub = "LatencyCrashHub"
    root = make_script_root(tmp_path / "root", {"SAMPLE_HUB": hub, "SAMPLE_SCHEDULE": NEVER})
    state = tmp_path / "state"
    args = ("--durable-latency", "500", "--durable-jitter", "100")
    first = HostProcess(root, state, *args)
    host_processes.append(first)
    first.start()
    assert "Durable latency: 500 ms (+0-100 ms jitter), as on Azure Storage's queues." in first.output()
    client = durable_client(first.base_url)
    await client.start_new("one_activity", "delayed-activity", "after the crash")
    await wait_for(client, "delayed-activity", {"Running"})  # its first episode queued the activity's work item
    await client.start_new("one_activity", "delayed-start", "queued before the crash")
    await client.signal_entity(df.EntityId("counter", "delayed"), "add", 3)
    first.kill()
    killed_at = time.time()

    with sqlite3.connect(database_path(state, hub)) as db:  # what was committed and not yet delivered
        [(activity_visible_at,)] = db.execute("SELECT visible_at FROM activities").fetchall()
        [(start_visible_at,)] = db.execute("SELECT visible_at FROM inbox WHERE instance_id = 'delayed-start'")
        [(signal_visible_at,)] = db.execute("SELECT visible_at FROM entity_messages").fetchall()
    db.close()
    assert min(activity_visible_at, start_visible_at, signal_visible_at) > killed_at

    second = HostProcess(root, state, *args)
    host_processes.append(second)
    second.start()
    client = durable_client(second.base_url)
    done = await wait_for(client, "delayed-activity")
    assert done.output == "Hello after the crash"
    assert (await wait_for(client, "delayed-start")).output == "Hello queued before the crash"
    assert await eventually(lambda: read_state(client, "counter", "delayed")) == 3
    [ran] = [e for e in done.historyEvents if e["EventType"] == "TaskCompleted"]
    assert parse_time(ran["Timestamp"]).timestamp() >= activity_visible_at - TOLERANCE  # not run before its time
    assert second.stop() == 0


# ---------------------------------------------------------------------- settings


def test_latency_comes_from_the_command_line_then_the_environment():
    environ = {"DEVHOST_DURABLE_LATENCY_MS": "2000", "DEVHOST_DURABLE_JITTER_MS": "10", "DEVHOST_DURABLE_SEED": "3"}
    from_env = QueueLatency.from_settings(None, None, None, environ)
    assert (from_env.latency_ms, from_env.jitter_ms, from_env.enabled) == (2000, 10, True)
    given = QueueLatency.from_settings(500, None, None, environ)  # the command line wins, with its own jitter
    assert (given.latency_ms, given.jitter_ms) == (500, 250)
    assert not QueueLatency.from_settings(0, None, None, environ).enabled  # --durable-latency 0 turns it off
    assert QueueLatency.from_settings(None, 40, None, environ).jitter_ms == 40
    assert not QueueLatency.from_settings(None, None, None, {}).enabled
    with pytest.raises(SettingError, match="DEVHOST_DURABLE_LATENCY_MS"):
        QueueLatency.from_settings(None, None, None, {"DEVHOST_DURABLE_LATENCY_MS": "soon"})
    with pytest.raises(SettingError, match="DEVHOST_DURABLE_SEED"):
        QueueLatency.from_settings(None, None, None, {"DEVHOST_DURABLE_SEED": "x"})


def test_command_line_options():
    args = parse_args(["--durable-latency", "2000"])
    assert (args.durable_latency, args.durable_jitter, args.durable_seed) == (2000, None, None)
    args = parse_args(["--durable-latency", "300", "--durable-jitter", "0", "--durable-seed", "5"])
    assert (args.durable_latency, args.durable_jitter, args.durable_seed) == (300, 0, 5)
    assert parse_args([]).durable_latency is None
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(argparse.ArgumentTypeError):
            milliseconds(bad)


def test_delays_and_the_start_up_line():
    off = QueueLatency()
    assert (off.deliver_at(), off.deliver_at(12.5), off.delay()) == (0.0, 12.5, 0.0)  # at once, as without it
    assert "delivered at once" in off.describe()
    on = QueueLatency(2000, seed=4)
    assert on.describe() == "Durable latency: 2000 ms (+0-1000 ms jitter), as on Azure Storage's queues."
    delays = [on.delay() for _ in range(200)]
    assert all(2.0 <= d <= 3.0 for d in delays)
    same_seed = QueueLatency(2000, seed=4)
    assert [same_seed.delay() for _ in range(200)] == delays  # seeded: reproducible
    now = time.time()
    assert on.deliver_at() >= now + 2.0
    assert on.deliver_at(now + 60) >= now + 62.0  # a timer: its time, then the hop
    with pytest.raises(ValueError):
        QueueLatency(-1)


async def test_banner_shows_the_latency(start_host: StartHost):
    host = await start_host(250, 0)
    assert "Durable latency: 250 ms (+0-0 ms jitter), as on Azure Storage's queues." in host.banner()


async def test_the_environment_sets_the_latency_of_a_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DEVHOST_DURABLE_LATENCY_MS", "150")
    root = make_script_root(tmp_path / "env", {"SAMPLE_HUB": "LatencyTests", "SAMPLE_SCHEDULE": NEVER})
    host = DevHost(HostOptions(app=APP_MODULE, script_root=root, state_dir=root / "state", port=0))
    await host.start()
    try:
        assert "Durable latency: 150 ms (+0-75 ms jitter), as on Azure Storage's queues." in host.banner()
    finally:
        await host.stop()


def test_a_state_dir_of_schema_1_gets_the_activity_delay_column(tmp_path: Path):
    path = database_path(tmp_path, "Old")
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', '1');"
            "CREATE TABLE activities (id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, "
            "execution_id TEXT NOT NULL, task_id INTEGER NOT NULL, name TEXT NOT NULL, input TEXT);"
            "INSERT INTO activities (instance_id, execution_id, task_id, name, input) "
            "VALUES ('i', 'e', 0, 'hello', '1');"
        )
    db.close()
    store = Store(tmp_path, "Old")
    try:
        [item] = store.pending_activities()
        assert (item.instance_id, item.name, item.visible_at) == ("i", "hello", 0.0)
        assert store.get_activity(item.id) == item
        assert store._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    finally:
        store.close()
