"""Rough throughput of the local host (not a test): `python -m tests.devhost.bench_devhost`.

Starts `python -m devhost` with the sample app as a separate process and measures, through its Durable HTTP API,
start + one-activity orchestrations per second and entity signals per second (until applied).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import azure.durable_functions as df
from azure.durable_functions.models.utils import http_utils

from tests.devhost.conftest import NEVER, HostProcess, make_script_root

API = "/runtime/webhooks/durabletask"


async def bounded(concurrency: int, jobs: list) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def run(job) -> None:
        async with semaphore:
            await job

    await asyncio.gather(*(run(job) for job in jobs))


async def orchestrations(client: df.DurableOrchestrationClient, http: aiohttp.ClientSession, count: int) -> float:
    prefix = f"bench-{time.monotonic_ns()}"
    started = time.perf_counter()
    await bounded(16, [client.start_new("one_activity", f"{prefix}-{i}", i) for i in range(count)])
    while True:
        async with http.get(
            f"{API}/instances/", params={"instanceIdPrefix": prefix, "runtimeStatus": "Completed", "showInput": "false"}
        ) as response:
            if len(await response.json()) == count:
                break
        await asyncio.sleep(0.02)
    return count / (time.perf_counter() - started)


async def entity_signals(client: df.DurableOrchestrationClient, http: aiohttp.ClientSession, count: int) -> tuple:
    keys = [f"bench-{time.monotonic_ns()}-{i}" for i in range(10)]
    started = time.perf_counter()
    await bounded(32, [client.signal_entity(df.EntityId("counter", keys[i % 10]), "add", 1) for i in range(count)])
    acknowledged = time.perf_counter() - started
    while True:
        total = 0
        for key in keys:
            async with http.get(f"{API}/entities/counter/{key}") as response:
                total += (await response.json()) if response.status == 200 else 0
        if total == count:
            break
        await asyncio.sleep(0.02)
    return count / acknowledged, count / (time.perf_counter() - started)


async def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory() as folder:
        root = make_script_root(Path(folder) / "root", {"SAMPLE_HUB": "BenchHub", "SAMPLE_SCHEDULE": NEVER})
        process = HostProcess(root, Path(folder) / "state", "--log-level", "WARNING").start()
        try:
            binding = {"taskHubName": "BenchHub", "creationUrls": {}, "managementUrls": {}}
            binding["rpcBaseUrl"] = f"{process.base_url.replace('localhost', '127.0.0.1')}{API}/"
            client = df.DurableOrchestrationClient(json.dumps(binding))
            async with aiohttp.ClientSession(base_url=process.base_url) as http:
                await orchestrations(client, http, 20)  # warm up
                rate = await orchestrations(client, http, count)
                print(f"start + one activity: {rate:.0f} orchestrations/s ({count} instances, 16 concurrent starts)")  # noqa: T201
                acknowledged, applied = await entity_signals(client, http, count * 5)
                print(  # noqa: T201
                    f"entity signals: {acknowledged:.0f}/s acknowledged, {applied:.0f}/s applied "
                    f"({count * 5} signals over 10 entities, 32 concurrent)"
                )
        finally:
            await http_utils._close_session()
            process.stop()


if __name__ == "__main__":
    asyncio.run(main())
