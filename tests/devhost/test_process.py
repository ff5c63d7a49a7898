"""`python -m devhost` as a process: two of them by default (HTTP triggers; the durable worker), or one with
`--single-process`; start-up listing, timer triggers, graceful stop, kill -9 recovery, start-up failures."""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import azure.durable_functions as df
import pytest

from devhost import DevHost, HostOptions
from devhost.quiet import QuietGate
from devhost.store import StateDirInUseError, lock_state_dir
from tests.devhost.conftest import (
    APP_MODULE,
    NEVER,
    HostProcess,
    child_pids,
    eventually,
    make_script_root,
    parent_pid,
    process_gone,
)

API = "/runtime/webhooks/durabletask"


def durable_client(base_url: str) -> df.DurableOrchestrationClient:
    binding = {
        "taskHubName": "CrashHub",
        "creationUrls": {},
        "managementUrls": {},
        "rpcBaseUrl": f"{base_url.replace('localhost', '127.0.0.1')}{API}/",
    }
    return df.DurableOrchestrationClient(json.dumps(binding))


def read_runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_listing_timer_trigger_and_graceful_stop(tmp_path: Path, host_processes: list[HostProcess]):
    runs = tmp_path / "timer.log"
    root = make_script_root(
        tmp_path / "root",
        {
            "SAMPLE_HUB": "TimerHub",
            "SAMPLE_SCHEDULE": "* * * * * *",  # every second
            "SAMPLE_TIMER_LOG": str(runs),
            "SAMPLE_TIMER_SLEEP": "1.3",  # longer than the period: the next tick must be skipped
        },
    )
    process = HostProcess(root, tmp_path / "state")
    host_processes.append(process)
    process.start()
    worker = process.worker_pid
    assert worker is not None and parent_pid(worker) == process.pid  # the timer runs in the durable worker

    output = process.output()
    port = re.search(r"http://localhost:(\d+)", output).group(1)
    assert "Functions:" in output
    assert f"  get_item: [GET] http://localhost:{port}/api/items/{{category:alpha}}/{{item_id:int}}" in output
    assert "  tick: timerTrigger" in output
    assert "  full_tour: orchestrationTrigger" in output

    await eventually(lambda: len(read_runs(runs)) >= 3, within=15)
    found = read_runs(runs)
    for previous, current in itertools.pairwise(found):
        assert current["start"] >= previous["end"]  # never overlapping
    assert not any(run["past_due"] for run in found)
    assert re.search(r"Executing 'Functions\.tick' \(Reason='Timer fired at [^']+', Id=[0-9a-f-]{36}\)", output) or (
        re.search(r"Executing 'Functions\.tick'", process.output())
    )
    assert re.search(r"Executed 'Functions\.tick' \(Succeeded, Id=[0-9a-f-]{36}, Duration=\d+ms\)", process.output())
    assert process.stop() == 0
    assert "Host stopped." in process.output()
    assert process_gone(worker)  # a graceful stop stops (and waits for) the worker too


async def test_kill_9_and_restart_loses_and_repeats_nothing_acknowledged(
    tmp_path: Path, host_processes: list[HostProcess]
):
    root = make_script_root(tmp_path / "root", {"SAMPLE_HUB": "CrashHub", "SAMPLE_SCHEDULE": NEVER})
    state = tmp_path / "state"
    first = HostProcess(root, state)
    host_processes.append(first)
    first.start()
    client = durable_client(first.base_url)
    ids = [f"crash-{i}" for i in range(6)]
    for instance_id in ids:
        await client.start_new("timer_then_event", instance_id, {"seconds": 1, "counter": "calls"})

    # Signals race the kill: whatever was acknowledged must be applied exactly once.
    acknowledged = 0
    attempted = 40

    async def signal(session: aiohttp.ClientSession) -> None:
        nonlocal acknowledged
        async with session.post(f"{API}/entities/counter/signals?op=add", json=json.dumps(1)) as response:
            if response.status == 202:
                acknowledged += 1
                if acknowledged == 20:
                    first.kill()

    first_worker = first.worker_pid
    assert first_worker is not None
    async with aiohttp.ClientSession(base_url=first.base_url) as session:
        await asyncio.gather(*(signal(session) for _ in range(attempted)), return_exceptions=True)
    if first.process.poll() is None:
        first.kill()
    assert acknowledged >= 20
    await eventually(lambda: process_gone(first_worker), within=5)  # the worker dies with its host

    # as if the killed host's worker took a while to exit: the new worker waits for the state dir (the test takes
    # the lock once the old worker has let go of it: its last thread may outlive its /proc state by a few ms)
    held = lock_state_dir(state, wait=5)
    releaser = threading.Timer(1.2, held.close)
    releaser.start()
    second = HostProcess(root, state)
    host_processes.append(second)
    second.start()
    assert not releaser.is_alive()  # it started only after the lock was released
    client = durable_client(second.base_url)
    for instance_id in ids:  # events may arrive before the timers fire: they are buffered
        await client.raise_event(instance_id, "go", instance_id)
    second_worker = second.worker_pid
    second.kill()  # right after the events are acknowledged, while the episodes and entity calls run

    third = HostProcess(root, state)  # at once: its worker waits for the killed one to let go of the state dir
    host_processes.append(third)
    third.start()
    assert second_worker is not None and process_gone(second_worker)
    client = durable_client(third.base_url)

    async def all_completed() -> list | None:
        statuses = [await client.get_status(i, show_history=True) for i in ids]
        return statuses if all(s.runtime_status and s.runtime_status.value == "Completed" for s in statuses) else None

    statuses = await eventually(all_completed, within=20)
    assert sorted(s.output["value"] for s in statuses) == [1, 2, 3, 4, 5, 6]  # each call applied exactly once
    for status in statuses:
        kinds = [e["EventType"] for e in status.historyEvents]
        assert kinds.count("ExecutionStarted") == 1
        assert kinds.count("EventRaised") == 2  # the external event and the entity's response
        assert status.output["data"] == json.dumps(status.instance_id)
    calls = await client.read_entity_state(df.EntityId("counter", "calls"))
    assert calls.entity_state == 6

    async def signals_settled() -> int | None:
        state = await client.read_entity_state(df.EntityId("counter", "signals"))
        return state.entity_state if state.entity_exists and state.entity_state >= acknowledged else None

    applied = await eventually(signals_settled)
    assert acknowledged <= applied <= attempted
    assert third.stop() == 0


async def test_two_processes_by_default_with_auth_latency_and_public_urls(
    tmp_path: Path, host_processes: list[HostProcess]
):
    root = make_script_root(tmp_path / "root", {"SAMPLE_HUB": "SplitHub", "SAMPLE_SCHEDULE": NEVER})
    args = ("--enable-auth", "--durable-latency", "50", "--durable-jitter", "0")
    process = HostProcess(root, tmp_path / "state", *args)
    host_processes.append(process)
    process.start()
    output = process.output()
    worker = process.worker_pid
    assert worker is not None and worker != process.pid and parent_pid(worker) == process.pid
    # the worker yields the CPU to the host (nice +10, capped at 19)
    assert os.getpriority(os.PRIO_PROCESS, worker) == min(19, os.getpriority(os.PRIO_PROCESS, process.pid) + 10)
    assert output.count("Functions:") == 1 and output.count("Host started:") == 1  # one banner, by the host
    assert "Durable latency: 50 ms (+0-0 ms jitter)" in output
    master = re.search(r"master key: (\S+)", output).group(1)
    port = urlsplit(process.base_url).port
    async with aiohttp.ClientSession(base_url=process.base_url.replace("localhost", "127.0.0.1")) as http:
        async with http.get("/api/pid") as response:
            assert await response.json() == process.pid  # HTTP triggers run in the host
        # the SDK's start_new goes straight to the worker; the URLs it hands back name the public port
        async with http.post("/api/start/where") as response:
            assert response.status == 202
            urls = await response.json()
        status_url = urls["statusQueryGetUri"]
        assert urlsplit(status_url).port == port and "code=" in status_url

        async def completed() -> dict | None:
            async with http.get(status_url) as response:
                body = await response.json()
                return body if body["runtimeStatus"] == "Completed" else None

        status = await eventually(completed)
        assert status["output"] == worker  # activities run in the durable worker
        # the Durable HTTP API on the public port checks the keys (in the worker, behind the proxy)
        path = f"{API}/instances/{urls['id']}"
        async with http.get(path) as response:
            assert response.status == 401
        async with http.get(path, params={"code": master}) as response:
            assert response.status == 200
        async with http.post(f"{API}/entities/counter/split?op=add&code={master}", json=json.dumps(2)) as response:
            assert response.status == 202
        counter = "/api/counter/split"  # read_entity_state from an HTTP trigger, through the private RPC path
        assert await eventually(lambda: _read_json(http, counter)) == 2
    assert "Executed 'Functions.process_id' (Succeeded" in process.output()  # the worker logs to the same output
    assert process.stop() == 0
    assert process_gone(worker)


async def _read_json(http: aiohttp.ClientSession, path: str) -> object:
    async with http.get(path) as response:
        return await response.json() if response.status == 200 else None


async def test_single_process_runs_everything_in_one(tmp_path: Path, host_processes: list[HostProcess]):
    root = make_script_root(tmp_path / "root", {"SAMPLE_HUB": "SingleHub", "SAMPLE_SCHEDULE": NEVER})
    process = HostProcess(root, tmp_path / "state", "--single-process")
    host_processes.append(process)
    process.start()
    assert process.worker_pid is None
    assert f"Every function runs in this one process (pid {process.pid}" in process.output()
    assert child_pids(process.pid) in ([], None)  # None: no /proc to tell
    client = durable_client(process.base_url)
    await client.start_new("where", "single")

    async def output() -> int | None:
        status = await client.get_status("single")
        return status.output if status.runtime_status and status.runtime_status.value == "Completed" else None

    assert await eventually(output) == process.pid
    assert process.stop() == 0


async def test_a_worker_that_cannot_start_fails_the_host(tmp_path: Path, host_processes: list[HostProcess]):
    root = make_script_root(tmp_path / "root", {"SAMPLE_HUB": "FailHub", "SAMPLE_SCHEDULE": NEVER})
    not_a_folder = tmp_path / "state"
    not_a_folder.write_text("a file where the state directory should be")  # only the worker opens the state dir
    process = HostProcess(root, not_a_folder)
    host_processes.append(process)
    with pytest.raises(AssertionError, match="devhost exited with 1"):
        process.start()
    output = process.output()
    assert re.search(r"The host could not start: .*File exists", output)
    assert "Host started" not in output


async def test_the_http_role_points_the_sdk_client_at_the_worker_and_counts_its_requests_for_it(tmp_path: Path):
    root = make_script_root(tmp_path / "root", {"SAMPLE_HUB": "RoleHub", "SAMPLE_SCHEDULE": NEVER})
    options = HostOptions(app=APP_MODULE, script_root=root, state_dir=root / "state", port=0, role="http")
    host = DevHost(options)
    try:
        await host.start()
        binding = json.loads(host.client_binding)
        assert host.durable_port != host.port
        assert binding["rpcBaseUrl"] == f"http://127.0.0.1:{host.durable_port}{API}/"  # no proxy hop
        assert binding["baseUrl"] == f"{host.base_url}{API}"  # public URLs on the public port
        assert host.worker_pid is not None and parent_pid(host.worker_pid) == os.getpid()
        # The board the worker reads before starting background work (devhost.quiet) counts HTTP trigger requests.
        gate = QuietGate.open((root / "state").resolve())
        assert gate is not None
        before = time.monotonic()
        async with aiohttp.ClientSession() as session, session.get(f"{host.base_url}/api/greet/ada") as response:
            assert response.status == 200
        in_flight, last_change = gate.read()
        assert in_flight == 0 and last_change > before  # it came and was answered
        gate.close()
    finally:
        await host.stop()
    assert host.worker_exit is not None and host.worker_exit.done()


def test_the_state_dir_lock_is_waited_for(tmp_path: Path):
    held = lock_state_dir(tmp_path)
    with pytest.raises(StateDirInUseError):
        lock_state_dir(tmp_path, wait=0.1)
    releaser = threading.Timer(0.3, lambda: (fcntl.flock(held.fileno(), fcntl.LOCK_UN), held.close()))
    releaser.start()
    started = time.monotonic()
    taken = lock_state_dir(tmp_path, wait=10)
    assert 0.2 < time.monotonic() - started < 5
    taken.close()
    releaser.join()
