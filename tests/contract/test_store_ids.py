"""Ids as users write them, through every store operation of each adapter: nothing is read back for another id.

User, session and turn ids are any strings of printable characters (``memory_core.fields``): ``+``, spaces, ``/``,
``\\``, ``#``, ``?``, ``%`` and non-ASCII included, up to 256 characters (1 KiB of UTF-8, within Cosmos DB's 2 KB
partition key values with large partition keys). Document ids are digests of them (``stable_id``), so Cosmos DB's
rule against ``/ \\ ? #`` in ids never applies.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memory_core.domain import Chunk, Insight, MemoryKind, SessionSummary, stable_id
from memory_core.ports import Store
from memory_core.session import TurnInput, new_record

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# Ids that differ only in what a URL, a key or a file name would escape, fold or cut: each must be its own.
ODD_IDS = [
    "user+tag@example.com",
    "user tag@example.com",
    "user%2Btag@example.com",
    "john doe",
    "john+doe",
    "john%20doe",
    "a/b",
    "a%2Fb",
    "a\\b",
    "x#y?z",
    "x%23y%3Fz",
    "100%",
    "müller",
    "mu\u0308ller",  # the same word, decomposed: another id
    "用户 😀",
    " padded ",
    "padded",
    "a" * 256,
    "😀" * 256,  # 1 KiB of UTF-8
]


def _vector(i: int) -> list[float]:
    return [1.0, float(i % 7), 0.5, float(i % 3)]


async def test_every_operation_keeps_each_odd_id_apart(store: Store):
    for i, user in enumerate(ODD_IDS):
        session = turn_id = user
        assert await store.create_session(new_record(user, session, T0)) is True
        turn = TurnInput(turn_id=turn_id, user_message=f"zebra number {i} {user}", agent_message="noted")
        first = await store.append_turn(user, session, turn, T0 + timedelta(minutes=i))
        repeat = await store.append_turn(user, session, turn, T0 + timedelta(minutes=i))
        assert (first.turn.seq, first.duplicate, repeat.duplicate) == (1, False, True)
        assert await store.set_turn_vectors([first.turn], [_vector(i)]) == 1
        chunk = Chunk(
            user_id=user, session_id=session, index=0, first_seq=1, last_seq=1, summary=f"chunk {i}", timestamp=T0
        )
        assert await store.put_chunk(chunk) is not False
        summary = SessionSummary(
            user_id=user,
            session_id=session,
            summary=f"summary {i}",
            turn_count=1,
            first_seq=1,
            last_seq=1,
            created_at=T0,
        )
        assert await store.put_summary(summary) is not False
        insight = Insight(
            id=stable_id("insight", user, "k", str(i)),
            user_id=user,
            key="k",
            category="test",
            text=f"insight {i}",
            source_session_id=session,
            source_turns=(1,),
            status="active",
            valid_from=T0,
            created_at=T0,
            updated_at=T0,
        )
        assert await store.put_insights([insight]) is not False

    for i, user in enumerate(ODD_IDS):
        session = turn_id = user
        record = await store.get_session(user, session)
        assert record is not None and (record.user_id, record.session_id, record.turn_count) == (user, session, 1)
        assert [r.session_id for r in await store.list_sessions(user)] == [session]
        stored = await store.get_turn(user, session, turn_id)
        assert stored is not None and stored.user_message == f"zebra number {i} {user}"
        assert [(t.turn_id, t.user_message) for t in await store.get_turns(user, session)] == [
            (turn_id, f"zebra number {i} {user}")
        ]
        assert [c.summary for c in await store.get_chunks(user, session)] == [f"chunk {i}"]
        assert [s.summary for s in await store.get_summaries(user)] == [f"summary {i}"]
        assert [x.text for x in await store.get_insights(user)] == [f"insight {i}"]
        hits = await store.search_text(user, "zebra", [MemoryKind.TURN], 10)
        assert [(h.session_id, h.text.count(f"number {i} ")) for h in hits] == [(session, 1)]
        vector_hits = await store.search_vector(user, _vector(i), [MemoryKind.TURN], 10)
        assert [h.session_id for h in vector_hits] == [session]
        exported = await store.export_user(user)
        assert exported.user_id == user
        assert [t.turn_id for t in exported.turns] == [turn_id]
        assert [s.session_id for s in exported.sessions] == [session]
        assert [x.text for x in exported.insights] == [f"insight {i}"]


async def test_an_odd_session_id_is_its_own_session_within_one_user(store: Store):
    user = "someone@example.com"
    for i, session in enumerate(ODD_IDS):
        await store.create_session(new_record(user, session, T0 + timedelta(minutes=i)))
        turn = TurnInput(turn_id="same turn id", user_message=f"message {i}", agent_message="ok")
        assert (await store.append_turn(user, session, turn, T0)).turn.seq == 1
    sessions = await store.list_sessions(user, limit=100)
    assert sorted(r.session_id for r in sessions) == sorted(ODD_IDS)
    for i, session in enumerate(ODD_IDS):
        stored = await store.get_turn(user, session, "same turn id")
        assert stored is not None and stored.user_message == f"message {i}"
