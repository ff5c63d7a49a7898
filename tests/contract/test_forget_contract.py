"""Forgetting a user, in the store: the pending forget refuses the user's writes, guarded background writes land only
while their session exists, and a forget during concurrent appends keeps nothing acknowledged after it began.

Run against each adapter (see conftest.py for the legs); the last test reads the SQLite file's bytes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memory_core import session as rules
from memory_core.adapters.sqlite import SqliteStore
from memory_core.domain import Chunk, Insight, MemoryKind, SessionSummary, stable_id
from memory_core.errors import SessionNotFoundError, UserForgettingError
from memory_core.ports import SessionGuard, Store
from memory_core.session import TurnInput

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALL_KINDS = list(MemoryKind)


def turn_input(turn_id: str, text: str = "hello") -> TurnInput:
    return TurnInput(turn_id=turn_id, user_message=text, agent_message="noted")


def unit(*values: float) -> list[float]:
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def chunk(user: str, session: str = "s1", text: str = "a chunk") -> Chunk:
    return Chunk(user_id=user, session_id=session, index=0, first_seq=1, last_seq=2, summary=text, timestamp=T0)


def summary(user: str, session: str = "s1", text: str = "a summary") -> SessionSummary:
    return SessionSummary(
        user_id=user, session_id=session, summary=text, turn_count=2, first_seq=1, last_seq=2, created_at=T0
    )


def insight(user: str, text: str = "a fact about the user") -> Insight:
    return Insight(
        id=stable_id("insight", user, "k", text),
        user_id=user,
        key="k",
        category="test",
        text=text,
        source_session_id="s1",
        source_turns=(1,),
        valid_from=T0,
        created_at=T0,
        updated_at=T0,
    )


async def session_with_turns(store: Store, user: str, session: str = "s1", turns: int = 2) -> SessionGuard:
    record = rules.new_record(user, session, T0)
    assert await store.create_session(record)
    for n in range(1, turns + 1):
        await store.append_turn(user, session, turn_input(f"t{n}", f"{user} message {n}"), T0)
    return SessionGuard.of(record)


async def test_a_pending_forget_refuses_the_users_sessions_and_turns_until_it_is_finished(store: Store):
    await session_with_turns(store, "alice")
    await session_with_turns(store, "bob")
    began = await store.begin_forget("alice", T0)
    assert began == T0
    assert await store.begin_forget("alice", T0 + timedelta(minutes=5)) == T0  # a repeat keeps when it began
    with pytest.raises(UserForgettingError) as refused:
        await store.append_turn("alice", "s1", turn_input("t3"), T0)
    assert refused.value.field == "user_id"
    with pytest.raises(UserForgettingError):
        await store.append_turn("alice", "s1", turn_input("t1", "alice message 1"), T0)  # even a repeat
    with pytest.raises(UserForgettingError):
        await store.create_session(rules.new_record("alice", "s2", T0))
    assert await store.get_session("alice", "s2") is None
    # Other users go on.
    assert (await store.append_turn("bob", "s1", turn_input("t3"), T0)).turn.seq == 3
    assert [(p.user_id, p.began_at) for p in await store.pending_forgets()] == [("alice", T0)]

    deleted = await store.delete_user("alice")
    assert (deleted.sessions, deleted.turns) == (1, 2)
    assert [p.user_id for p in await store.pending_forgets()] == ["alice"]  # the forget stays pending
    with pytest.raises(UserForgettingError):
        await store.create_session(rules.new_record("alice", "s1", T0))

    await store.finish_forget("alice")
    assert await store.pending_forgets() == []
    # The user may come back: a new session under the same id is a new session.
    assert await store.create_session(rules.new_record("alice", "s1", T0 + timedelta(hours=1)))
    assert (await store.append_turn("alice", "s1", turn_input("t1", "back again"), T0)).turn.seq == 1
    assert [t.user_message for t in (await store.export_user("alice")).turns] == ["back again"]
    await store.finish_forget("nobody")  # nothing pending: nothing to do


async def test_pending_forgets_are_listed_oldest_first_and_limited(store: Store):
    for minutes, user in ((3, "carol"), (1, "alice"), (2, "bob")):
        await store.begin_forget(user, T0 + timedelta(minutes=minutes))
    assert [p.user_id for p in await store.pending_forgets()] == ["alice", "bob", "carol"]
    assert [p.user_id for p in await store.pending_forgets(limit=2)] == ["alice", "bob"]


async def test_guarded_writes_land_only_while_their_session_exists(store: Store):
    guard = await session_with_turns(store, "alice")
    turns = await store.get_turns("alice", "s1")
    assert await store.put_chunk(chunk("alice"), unit(1, 0, 0, 0), guard=guard)
    assert await store.put_summary(summary("alice"), guard=guard)
    assert await store.put_insights([insight("alice")], guard=guard)
    assert await store.set_turn_vectors(turns, [unit(0, 1, 0, 0)] * len(turns), guard=guard) == len(turns)

    await store.delete_user("alice")  # what a forget does first: the session records go
    assert not await store.put_chunk(chunk("alice", text="after"), guard=guard)
    assert not await store.put_summary(summary("alice", text="after"), guard=guard)
    assert not await store.put_insights([insight("alice", "after")], guard=guard)
    assert await store.set_turn_vectors(turns, [unit(0, 0, 1, 0)] * len(turns), guard=guard) == 0
    export = await store.export_user("alice")
    assert not (export.sessions or export.turns or export.chunks or export.summaries or export.insights)

    # The user came back and started a session under the same id: work of the old one writes nothing into it.
    assert await store.create_session(rules.new_record("alice", "s1", T0 + timedelta(days=1)))
    await store.append_turn("alice", "s1", turn_input("t1", "a new life"), T0)
    assert not await store.put_chunk(chunk("alice", text="old chunk"), guard=guard)
    assert not await store.put_summary(summary("alice", text="old summary"), guard=guard)
    assert not await store.put_insights([insight("alice", "old fact")], guard=guard)
    assert await store.set_turn_vectors(turns[:1], [unit(0, 0, 0, 1)], guard=guard) == 0
    export = await store.export_user("alice")
    assert (export.chunks, export.summaries, export.insights) == ([], [], [])
    assert await store.search_vector("alice", unit(0, 0, 0, 1), ALL_KINDS, 5) == []


async def test_unguarded_writes_of_a_user_being_forgotten_are_not_kept(store: Store):
    await session_with_turns(store, "alice")
    await store.begin_forget("alice", T0)
    await store.delete_user("alice")
    assert not await store.put_chunk(chunk("alice"))
    assert not await store.put_summary(summary("alice"))
    assert not await store.put_insights([insight("alice")])
    export = await store.export_user("alice")
    assert (export.chunks, export.summaries, export.insights) == ([], [], [])
    assert await store.put_chunk(chunk("bob"))  # nobody else is affected


async def test_a_forget_during_concurrent_appends_refuses_what_follows_it_and_keeps_nothing(make_store):
    # Two clients of the same data (two workers), eight writers on two sessions; the forget runs on a third. An
    # append that starts once begin_forget has returned is refused; one in flight while it runs may be acknowledged
    # (SQLite: its transaction came first; Cosmos DB: its batch landed before the record was flagged), and is then
    # deleted by the forget: nothing acknowledged is kept.
    first, second, forgetter = await make_store(), await make_store(), await make_store()
    for session in ("s1", "s2"):
        assert await first.create_session(rules.new_record("alice", session, T0))
    began = asyncio.Event()
    started_after: list[tuple[str, str]] = []  # (turn id, outcome) of every append that started after it began

    async def writer(store: Store, n: int) -> None:
        for i in range(200):
            turn_id, after = f"w{n}-{i}", began.is_set()
            try:
                await store.append_turn("alice", f"s{n % 2 + 1}", turn_input(turn_id, f"secret {n} {i}"), T0)
                outcome = "stored"
            except (UserForgettingError, SessionNotFoundError) as refused:
                outcome = type(refused).__name__
            if after:
                started_after.append((turn_id, outcome))
                return
            await asyncio.sleep(0)

    async def forget() -> None:
        await asyncio.sleep(0.05)
        await forgetter.begin_forget("alice", T0)
        began.set()
        await forgetter.delete_user("alice")

    await asyncio.gather(*(writer(first if n % 2 else second, n) for n in range(8)), forget())
    assert len(started_after) == 8, "every writer tried once more after the forget began"
    assert {outcome for _, outcome in started_after} == {"UserForgettingError"}
    export = await forgetter.export_user("alice")
    assert not (export.sessions or export.turns)
    assert await forgetter.search_text("alice", "secret", ALL_KINDS, 5) == []


async def test_sqlite_leaves_no_byte_of_a_forgotten_user_in_its_files(tmp_path: Path):
    path = tmp_path / "memory.sqlite3"
    store, other = SqliteStore(path), SqliteStore(path)  # the local host's two processes share the file
    await store.open("contract-test-embedder", 4)
    await other.open("contract-test-embedder", 4)
    try:
        for user, word in (("alice-the-forgotten", "zanzibarquokka"), ("bob", "ordinary")):
            guard = await session_with_turns(store, user, turns=0)
            for n in range(50):
                text = f"{word} number {n}: " + "x" * 200
                await store.append_turn(user, "s1", turn_input(f"t{n}", text), T0)
            await store.put_chunk(chunk(user, text=f"{word} chunk"), unit(1, 0, 0, 0), guard=guard)
            await store.put_summary(summary(user, text=f"{word} summary"), guard=guard)
            await store.put_insights([insight(user, f"{word} insight")], guard=guard)
        assert (await other.search_text("alice-the-forgotten", "zanzibarquokka", ALL_KINDS, 5)) != []

        def occurrences(needle: bytes) -> int:
            return sum(f.read_bytes().count(needle) for f in tmp_path.iterdir() if f.name.startswith(path.name))

        assert occurrences(b"zanzibarquokka") > 0 and occurrences(b"alice-the-forgotten") > 0
        await store.begin_forget("alice-the-forgotten", T0)
        await store.delete_user("alice-the-forgotten")
        assert occurrences(b"zanzibarquokka") == 0  # rows zeroed, index merged, WAL truncated
        await store.finish_forget("alice-the-forgotten")
        assert occurrences(b"alice-the-forgotten") == 0  # and the pending forget's row too
        assert occurrences(b"ordinary") > 0
        assert len((await other.export_user("bob")).turns) == 50
        assert (await other.search_text("bob", "ordinary", ALL_KINDS, 5)) != []
    finally:
        await store.close()
        await other.close()
