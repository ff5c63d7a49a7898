"""The SQLite store's inline appends: on the event loop's thread when the connection is free, never waiting there.

A turn's append runs on the caller's thread (no hop to the store's thread) when nothing else uses the connection.
Another process writing the same file must neither block the event loop nor lose the turn: the append then goes to
the store's thread, which waits for the lock as before.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memory_core.adapters.sqlite import SqliteStore
from memory_core.domain import MemoryKind
from memory_core.session import TurnInput, new_record

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _turn(i: int) -> TurnInput:
    return TurnInput(turn_id=f"t{i}", user_message=f"message {i}", agent_message="noted")


async def test_an_append_while_another_process_writes_waits_off_the_event_loop(tmp_path: Path):
    path = tmp_path / "memory.sqlite3"
    store = SqliteStore(path)
    await store.open(None, None)
    await store.create_session(new_record("alice", "s1", NOW))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the worker process in the middle of a write
    try:
        append = asyncio.ensure_future(store.append_turn("alice", "s1", _turn(1), NOW))
        ticks = 0
        for _ in range(20):  # the loop keeps running while the append waits for the lock
            await asyncio.sleep(0.005)
            ticks += 1
        assert ticks == 20 and not append.done()
        other.execute("COMMIT")
        outcome = await asyncio.wait_for(append, timeout=5)
    finally:
        other.close()
    assert (outcome.turn.seq, outcome.duplicate) == (1, False)
    assert [t.turn_id for t in await store.get_turns("alice", "s1")] == ["t1"]
    await store.close()


async def test_inline_and_threaded_calls_never_share_the_connection(tmp_path: Path):
    # Appends (inline when the connection is free) mixed with reads and searches (always on the store's thread):
    # every append gets its own seq and the record counts each once.
    store = SqliteStore(tmp_path / "memory.sqlite3")
    await store.open(None, None)
    await store.create_session(new_record("alice", "s1", NOW))
    calls: list[Coroutine[Any, Any, Any]] = []
    for i in range(60):
        calls.append(store.append_turn("alice", "s1", _turn(i), NOW))
        if i % 2:
            calls.append(store.get_turns("alice", "s1"))
        else:
            calls.append(store.search_text("alice", "message", [MemoryKind.TURN], 10))
    results = await asyncio.gather(*calls)
    seqs = sorted(r.turn.seq for r in results[0::2])
    assert seqs == list(range(1, 61))
    record = await store.get_session("alice", "s1")
    assert record is not None and record.turn_count == 60
    assert len(await store.get_turns("alice", "s1")) == 60
    await store.close()
