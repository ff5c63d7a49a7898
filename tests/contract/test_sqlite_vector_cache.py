"""The SQLite store's cached vectors: current whatever process writes, and read again only when they changed.

Each store keeps a user's vectors in memory for its vector searches. On the local host two processes open one file:
the HTTP host answers searches while the worker embeds turns and writes chunks, summaries and insights. Every one of
those writes must reach the next search of the other process, and a forgotten user must not come back from a cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memory_core.adapters.sqlite import SqliteStore, _user_version
from memory_core.domain import MemoryKind
from tests.contract.test_forget_contract import (
    ALL_KINDS,
    T0,
    chunk,
    insight,
    session_with_turns,
    summary,
    turn_input,
    unit,
)

QUERY = unit(1, 0, 0, 0)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """The HTTP host's store and the worker's, on one file."""
    host, worker = SqliteStore(tmp_path / "memory.sqlite3"), SqliteStore(tmp_path / "memory.sqlite3")
    await host.open("contract-test-embedder", 4)
    await worker.open("contract-test-embedder", 4)
    yield host, worker
    await host.close()
    await worker.close()


async def _found(store: SqliteStore, user: str = "alice") -> list[tuple[MemoryKind, str]]:
    return [(h.kind, h.text) for h in await store.search_vector(user, QUERY, ALL_KINDS, 10)]


async def test_a_search_finds_what_another_process_wrote_after_it_cached_the_vectors(
    stores: tuple[SqliteStore, SqliteStore],
):
    host, worker = stores
    guard = await session_with_turns(host, "alice", turns=2)
    turns = await host.get_turns("alice", "s1")
    await worker.set_turn_vectors(turns[:1], [unit(0, 1, 0, 0)])
    assert [kind for kind, _ in await _found(host)] == [MemoryKind.TURN]  # now cached in the host

    await worker.set_turn_vectors(turns[1:], [unit(1, 0, 0, 0)])  # the worker embeds the next turn
    assert (await _found(host))[0][1] == turns[1].text()

    await worker.put_chunk(chunk("alice", text="the chunk"), unit(1, 0.1, 0, 0), guard=guard)
    await worker.put_summary(summary("alice", text="the summary"), unit(1, 0.2, 0, 0), guard=guard)
    await worker.put_insights([insight("alice", "the insight")], [unit(1, 0.3, 0, 0)], guard=guard)
    assert {kind for kind, _ in await _found(host)} == set(MemoryKind)

    superseded = insight("alice", "the insight").model_copy(update={"status": "superseded", "valid_to": T0})
    await worker.put_insights([superseded], [unit(1, 0.3, 0, 0)], guard=guard)
    assert MemoryKind.INSIGHT not in {kind for kind, _ in await _found(host)}


async def test_a_user_forgotten_by_another_process_is_not_found_from_the_cache(stores: tuple[SqliteStore, SqliteStore]):
    host, worker = stores
    await session_with_turns(host, "alice", turns=1)
    await worker.set_turn_vectors(await host.get_turns("alice", "s1"), [QUERY])
    assert len(await _found(host)) == 1
    await worker.begin_forget("alice", T0)
    await worker.delete_user("alice")
    await worker.finish_forget("alice")
    assert await _found(host) == []

    # The user comes back with new memories (SQLite may give the new row the old one's rowid): the host scores
    # them by their own vectors, not by the forgotten ones.
    await session_with_turns(worker, "alice", turns=0)
    await worker.append_turn("alice", "s1", turn_input("t1", "a new start"), T0)
    (turn,) = await worker.get_turns("alice", "s1")
    await worker.set_turn_vectors([turn], [unit(0, 1, 0, 0)])
    hits = await host.search_vector("alice", QUERY, ALL_KINDS, 10)
    assert [(h.text, round(h.score, 6)) for h in hits] == [(turn.text(), 0.0)]


async def test_the_vectors_are_read_once_and_again_only_after_a_write(stores: tuple[SqliteStore, SqliteStore]):
    host, worker = stores
    await session_with_turns(host, "alice", turns=1)
    await worker.set_turn_vectors(await host.get_turns("alice", "s1"), [QUERY])
    await _found(host)
    first = host._vectors.current("alice", _version(host, "alice"))
    await _found(host)
    assert first is not None and host._vectors.current("alice", _version(host, "alice")) is first  # not read again
    await worker.put_chunk(chunk("alice"), QUERY)
    assert host._vectors.current("alice", _version(host, "alice")) is None  # the worker's write changed it
    assert len(await _found(host)) == 2


def _version(store: SqliteStore, user_id: str) -> int | None:
    assert store._conn is not None
    return _user_version(store._conn, user_id)
