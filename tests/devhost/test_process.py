"""`python -m devhost` as a process: start-up listing, timer triggers, graceful stop, and kill -9 recovery."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path

import aiohttp
import azure.durable_functions as df

from tests.devhost.conftest import NEVER, HostProcess, eventually, make_script_root

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

    async with aiohttp.ClientSession(base_url=first.base_url) as session:
        await asyncio.gather(*(signal(session) for _ in range(attempted)), return_exceptions=True)
    if first.process.poll() is None:
        first.kill()
    assert acknowledged >= 20

    second = HostProcess(root, state)
    host_processes.append(second)
    second.start()
    client = durable_client(second.base_url)
    for instance_id in ids:  # events may arrive before the timers fire: they are buffered
        await client.raise_event(instance_id, "go", instance_id)
    second.kill()  # right after the events are acknowledged, while the episodes and entity calls run

    third = HostProcess(root, state)
    host_processes.append(third)
    third.start()
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
