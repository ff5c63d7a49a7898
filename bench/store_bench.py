"""SQLite store latency: store a turn, read a session's recent state, hybrid search over 10,000 turns of one user.

Usage: python -m bench.store_bench [--locomo PATH] [--turns 10000] [--queries 300] [--embedder local|hashing]

Turn texts come from LoCoMo (evaluation data, read from its path, not copied into the project), repeated across
sessions to reach --turns. Baselines measured in the same run on the same file settings:
  * a bare durable write: one INSERT + COMMIT of a row of the same size with the same PRAGMAs;
  * a no-op round trip through the store's worker thread (the floor of any store call).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from memory_core.adapters.sqlite import SqliteStore
from memory_core.domain import MemoryKind, SessionRecord, SessionStatus, Turn
from memory_core.retrieval import search

DEFAULT_LOCOMO = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "locomo" / "locomo-dev.json"
T0 = datetime(2023, 5, 8, tzinfo=UTC)


def locomo_texts(path: Path) -> list[tuple[str, str]]:
    data = json.loads(path.read_text())
    pairs: list[tuple[str, str]] = []
    for conv in data:
        c = conv["conversation"]
        for key in sorted(k for k in c if k.startswith("session_") and not k.endswith("date_time")):
            turns = c[key]
            for a, b in zip(turns[::2], turns[1::2], strict=False):
                pairs.append((f"{a['speaker']}: {a['text']}", f"{b['speaker']}: {b['text']}"))
    return pairs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def describe(name: str, samples: list[float], baseline: float | None = None) -> str:
    med, p99 = statistics.median(samples), percentile(samples, 99)
    ratio = f"  ({med / baseline:5.1f}x baseline median)" if baseline else ""
    return f"{name:<46} median {med * 1000:8.3f} ms   p99 {p99 * 1000:8.3f} ms   n={len(samples)}{ratio}"


async def timed(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locomo", type=Path, default=DEFAULT_LOCOMO)
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--embedder", choices=["local", "hashing"], default="local")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, synchronous={args.synchronous}"
    )
    pairs = locomo_texts(args.locomo)
    print(f"corpus: {len(pairs)} LoCoMo turn pairs from {args.locomo.name}, repeated to {args.turns} turns")

    if args.embedder == "local":
        from memory_core.adapters.local_embedder import build_local_embedder
        from memory_core.config import Settings

        embedder = build_local_embedder(Settings(EMBEDDINGS_PROVIDER="local"))
    else:
        from tests.support.fakes import HashingEmbedder

        embedder = HashingEmbedder(384)  # type: ignore[assignment]
    start = time.perf_counter()
    unique_vectors: list[list[float]] = []
    for i in range(0, len(pairs), 64):
        unique_vectors += await embedder.embed([f"User: {u}\nAssistant: {a}" for u, a in pairs[i : i + 64]])
    print(f"embedded {len(pairs)} texts with {embedder.model} in {time.perf_counter() - start:.1f}s (setup only)")

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.sqlite3", synchronous=args.synchronous)
        await store.open(embedder.model, embedder.dimensions)

        # Fill: one user, sessions of 100 turns.
        start = time.perf_counter()
        batch: list[Turn] = []
        vectors: list[list[float]] = []
        for n in range(args.turns):
            u, a = pairs[n % len(pairs)]
            session, seq = divmod(n, 100)
            batch.append(
                Turn(
                    user_id="bench-user",
                    session_id=f"s{session}",
                    seq=seq + 1,
                    turn_id=f"t{n}",
                    user_message=u,
                    agent_message=a,
                    timestamp=T0 + timedelta(minutes=n),
                )
            )
            vectors.append(unique_vectors[n % len(pairs)])
            if len(batch) == 500:
                await store.put_turns(batch, vectors)
                batch, vectors = [], []
        if batch:
            await store.put_turns(batch, vectors)
        for s in range(args.turns // 100 + 1):
            await store.put_session(
                SessionRecord(
                    user_id="bench-user",
                    session_id=f"s{s}",
                    status=SessionStatus.IDLE,
                    started_at=T0,
                    last_activity=T0,
                    turn_count=100,
                    compacted_through=90,
                )
            )
        print(f"filled {args.turns} turns in {time.perf_counter() - start:.1f}s (setup only)\n")

        # Baselines
        raw = sqlite3.connect(Path(tmp) / "raw.sqlite3", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute(f"PRAGMA synchronous={args.synchronous}")
        raw.execute("CREATE TABLE t (id TEXT PRIMARY KEY, doc TEXT, embedding BLOB)")
        payload = json.dumps({"text": pairs[0][0] + pairs[0][1]}) * 2
        blob = bytes(4 * embedder.dimensions)
        raw_samples = []
        for i in range(args.writes):
            start = time.perf_counter()
            raw.execute("BEGIN")
            raw.execute("INSERT INTO t VALUES (?, ?, ?)", (f"id{i}", payload, blob))
            raw.execute("COMMIT")
            raw_samples.append(time.perf_counter() - start)
        noop = await timed(lambda: store._run(lambda conn: None), args.writes)
        write_base = statistics.median(raw_samples)
        read_base = statistics.median(noop)
        print("baselines:")
        print(describe("raw sqlite3 INSERT+COMMIT (same PRAGMAs)", raw_samples))
        print(describe("no-op through the store's worker thread", noop))

        # Store a turn (with its 384-dim vector)
        counter = iter(range(10**9))

        async def store_one() -> None:
            i = next(counter)
            u, a = pairs[i % len(pairs)]
            turn = Turn(
                user_id="bench-user",
                session_id="live",
                seq=i + 1,
                turn_id=f"live{i}",
                user_message=u,
                agent_message=a,
                timestamp=T0,
            )
            await store.put_turns([turn], [unique_vectors[i % len(pairs)]])

        print("\nstore operations:")
        print(describe("store a turn (put_turns, 1 turn + vector)", await timed(store_one, args.writes), write_base))

        async def read_recent() -> None:
            record = await store.get_session("bench-user", "s42")
            assert record is not None
            await store.get_turns("bench-user", "s42", after_seq=record.compacted_through)

        print(
            describe("read a session's recent state (record+turns)", await timed(read_recent, args.queries), read_base)
        )

        # Hybrid search over the user's turns
        questions = [q["question"] for conv in json.loads(args.locomo.read_text()) for q in conv["qa"]]
        q_vectors = []
        for i in range(0, args.queries, 64):
            q_vectors += await embedder.embed(questions[i : min(i + 64, args.queries)])
        qi = iter(range(10**9))

        async def text_only() -> None:
            await store.search_text("bench-user", questions[next(qi) % args.queries], [MemoryKind.TURN], 20)

        async def vector_only() -> None:
            await store.search_vector("bench-user", q_vectors[next(qi) % args.queries], [MemoryKind.TURN], 20)

        async def hybrid() -> None:
            await search(store, embedder, "bench-user", questions[next(qi) % args.queries], 5)

        await hybrid()  # warm the vector cache, as a running service would have it
        total = args.turns + args.writes
        print(f"\nsearch over {total} turns of one user (top 5; each retriever looks 20 deep):")
        print(describe("full-text BM25 (FTS5)", await timed(text_only, args.queries), read_base))
        print(describe("vector (cached matrix, numpy)", await timed(vector_only, args.queries), read_base))
        print(describe(f"hybrid incl. query embedding ({args.embedder})", await timed(hybrid, args.queries), read_base))
        await store.close()
        await embedder.close()


if __name__ == "__main__":
    asyncio.run(main())
