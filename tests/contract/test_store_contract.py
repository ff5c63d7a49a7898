"""Every behaviour of the Store port, run against each adapter (see conftest.py for the legs)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from memory_core import session as rules
from memory_core.domain import (
    Chunk,
    Insight,
    MemoryKind,
    SessionRecord,
    SessionStatus,
    SessionSummary,
    Turn,
    stable_id,
)
from memory_core.errors import ConflictError, EmbeddingDimensionMismatchError, SessionEndedError, SessionNotFoundError
from memory_core.ports import Store
from memory_core.session import TurnInput

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALL_KINDS = list(MemoryKind)


def unit(*values: float) -> list[float]:
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def make_turn(user: str, session: str, seq: int, text: str = "", minutes: int = 0) -> Turn:
    return Turn(
        user_id=user,
        session_id=session,
        seq=seq,
        turn_id=f"{session}-t{seq}",
        user_message=text or f"message number {seq}",
        agent_message="noted",
        timestamp=T0 + timedelta(minutes=minutes or seq),
        metadata={"channel": "test"},
    )


def make_session(user: str, session: str, minutes: int, status: SessionStatus = SessionStatus.ACTIVE) -> SessionRecord:
    return SessionRecord(
        user_id=user,
        session_id=session,
        status=status,
        started_at=T0,
        last_activity=T0 + timedelta(minutes=minutes),
        turn_count=3,
        compacted_through=1,
        cumulative_summary="so far",
        chunk_count=1,
    )


def make_insight(user: str, key: str, text: str, *, status: str = "active", minutes: int = 0) -> Insight:
    return Insight(
        id=stable_id("insight", user, key, text),
        user_id=user,
        key=key,
        category="test",
        text=text,
        source_session_id="s1",
        source_turns=(1, 2),
        status=status,  # type: ignore[arg-type]
        valid_from=T0,
        valid_to=T0 + timedelta(days=1) if status == "superseded" else None,
        created_at=T0,
        updated_at=T0 + timedelta(minutes=minutes),
    )


# -- sessions ---------------------------------------------------------------------------------------------------


async def test_session_record_round_trips_and_missing_is_none(store: Store):
    record = make_session("alice", "s1", 5)
    await store.put_session(record)
    assert await store.get_session("alice", "s1") == record
    assert await store.get_session("alice", "nope") is None
    assert await store.get_session("bob", "s1") is None


async def test_put_session_replaces_the_record(store: Store):
    await store.put_session(make_session("alice", "s1", 5))
    ended = make_session("alice", "s1", 9, SessionStatus.ENDED)
    await store.put_session(ended)
    assert await store.get_session("alice", "s1") == ended


async def test_list_sessions_is_most_recent_first_filtered_and_limited(store: Store):
    for i, status in enumerate([SessionStatus.ACTIVE, SessionStatus.IDLE, SessionStatus.ACTIVE, SessionStatus.ENDED]):
        await store.put_session(make_session("alice", f"s{i}", minutes=i, status=status))
    await store.put_session(make_session("bob", "b1", minutes=99))
    assert [r.session_id for r in await store.list_sessions("alice")] == ["s3", "s2", "s1", "s0"]
    assert [r.session_id for r in await store.list_sessions("alice", SessionStatus.ACTIVE)] == ["s2", "s0"]
    assert [r.session_id for r in await store.list_sessions("alice", limit=2)] == ["s3", "s2"]


# -- turns ------------------------------------------------------------------------------------------------------


async def test_turns_come_back_in_sequence_order_with_all_fields(store: Store):
    turns = [make_turn("alice", "s1", seq) for seq in (3, 1, 2)]
    await store.put_turns(turns)
    got = await store.get_turns("alice", "s1")
    assert got == sorted(turns, key=lambda t: t.seq)
    assert got[0].metadata == {"channel": "test"} and got[0].timestamp == T0 + timedelta(minutes=1)


async def test_get_turns_after_and_limit(store: Store):
    await store.put_turns([make_turn("alice", "s1", seq) for seq in range(1, 8)])
    assert [t.seq for t in await store.get_turns("alice", "s1", after_seq=4)] == [5, 6, 7]
    assert [t.seq for t in await store.get_turns("alice", "s1", after_seq=1, limit=2)] == [2, 3]


async def test_writing_a_turn_twice_keeps_one_copy(store: Store):
    turn = make_turn("alice", "s1", 1)
    await store.put_turns([turn])
    await store.put_turns([turn])
    assert await store.get_turns("alice", "s1") == [turn]


async def test_turns_are_scoped_to_user_and_session(store: Store):
    await store.put_turns([make_turn("alice", "s1", 1), make_turn("alice", "s2", 1), make_turn("bob", "s1", 1)])
    assert [(t.user_id, t.session_id) for t in await store.get_turns("alice", "s1")] == [("alice", "s1")]
    assert [(t.user_id, t.session_id) for t in await store.get_turns("bob", "s1")] == [("bob", "s1")]
    assert await store.get_turns("carol", "s1") == []


async def test_unicode_text_round_trips(store: Store):
    turn = make_turn("alice", "s1", 1, text="Olá! 日本語 ✓ \"quotes\" 'single' \\ back\nslash")
    await store.put_turns([turn])
    assert (await store.get_turns("alice", "s1"))[0].user_message == turn.user_message


# -- chunks and summaries ---------------------------------------------------------------------------------------


async def test_chunks_in_order_and_upserted_by_index(store: Store):
    def chunk(index: int, summary: str) -> Chunk:
        return Chunk(
            user_id="alice",
            session_id="s1",
            index=index,
            first_seq=index * 10 + 1,
            last_seq=index * 10 + 10,
            summary=summary,
            timestamp=T0,
        )

    await store.put_chunk(chunk(1, "second"))
    await store.put_chunk(chunk(0, "first"))
    await store.put_chunk(chunk(0, "first, rewritten"))
    assert [c.summary for c in await store.get_chunks("alice", "s1")] == ["first, rewritten", "second"]
    assert await store.get_chunks("bob", "s1") == []


async def test_summaries_newest_first_one_per_session(store: Store):
    def summary(session: str, minutes: int, text: str) -> SessionSummary:
        return SessionSummary(
            user_id="alice",
            session_id=session,
            summary=text,
            turn_count=4,
            first_seq=1,
            last_seq=4,
            created_at=T0 + timedelta(minutes=minutes),
        )

    for i in range(4):
        await store.put_summary(summary(f"s{i}", i, f"summary {i}"))
    await store.put_summary(summary("s0", 0, "summary 0 again"))
    got = await store.get_summaries("alice", limit=10)
    assert [s.summary for s in got] == ["summary 3", "summary 2", "summary 1", "summary 0 again"]
    assert [s.session_id for s in await store.get_summaries("alice", limit=2)] == ["s3", "s2"]
    assert await store.get_summaries("bob") == []


# -- insights ---------------------------------------------------------------------------------------------------


async def test_insights_exclude_superseded_unless_asked(store: Store):
    old = make_insight("alice", "location", "The user lives in Porto.", status="superseded", minutes=1)
    new = make_insight("alice", "location", "The user lives in Lisbon.", minutes=2)
    other = make_insight("alice", "employer", "The user works at Contoso.", minutes=3)
    await store.put_insights([old, new, other])
    assert [i.text for i in await store.get_insights("alice")] == [other.text, new.text]
    assert {i.id for i in await store.get_insights("alice", include_superseded=True)} == {old.id, new.id, other.id}
    assert [i.text for i in await store.get_insights("alice", limit=1)] == [other.text]
    assert await store.get_insights("bob") == []


async def test_insight_upsert_by_id_updates_status(store: Store):
    insight = make_insight("alice", "location", "The user lives in Porto.")
    await store.put_insights([insight])
    retired = insight.model_copy(update={"status": "superseded", "valid_to": T0 + timedelta(days=2)})
    await store.put_insights([retired])
    assert await store.get_insights("alice") == []
    assert await store.get_insights("alice", include_superseded=True) == [retired]


# -- search -----------------------------------------------------------------------------------------------------


async def test_text_search_ranks_matching_items_and_stays_in_the_users_partition(store: Store):
    await store.put_turns(
        [
            make_turn("alice", "s1", 1, "My retirement plan is a 401k with conservative funds"),
            make_turn("alice", "s1", 2, "I walked the dog in the park"),
            make_turn("alice", "s1", 3, "Retirement at 65 sounds right, retirement is the goal"),
            make_turn("bob", "s1", 1, "My retirement is far away"),
        ]
    )
    hits = await store.search_text("alice", "retirement", ALL_KINDS, limit=10)
    assert {h.seqs for h in hits} == {(1,), (3,)}
    assert all(h.kind is MemoryKind.TURN and h.session_id == "s1" for h in hits)
    assert hits[0].seqs == (3,)  # more occurrences rank higher
    assert hits[0].score >= hits[1].score
    assert hits[0].timestamp == T0 + timedelta(minutes=3)
    assert "Retirement at 65" in hits[0].text


async def test_text_search_by_kind_and_without_superseded_insights(store: Store):
    await store.put_turns([make_turn("alice", "s1", 1, "coffee every morning")])
    await store.put_insights(
        [
            make_insight("alice", "preference:coffee", "The user loves coffee.", minutes=2),
            make_insight("alice", "preference:coffee", "The user drinks coffee black.", status="superseded"),
        ]
    )
    kinds = {h.kind for h in await store.search_text("alice", "coffee", ALL_KINDS, limit=10)}
    assert kinds == {MemoryKind.TURN, MemoryKind.INSIGHT}
    only = await store.search_text("alice", "coffee", [MemoryKind.INSIGHT], limit=10)
    assert [h.text for h in only] == ["The user loves coffee."]


async def test_text_search_finds_a_turn_by_the_day_it_happened_in_its_own_offset(store: Store):
    # 23:30 in New York on 8 May is 9 May in UTC: the day a user would name is the one of the turn's own offset.
    evening = datetime(2023, 5, 8, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    said = [("We planned the garden beds", evening), ("We planned the garden path", evening + timedelta(days=1))]
    assert await store.create_session(rules.new_record("alice", "s1", T0)) is True
    stored = []
    for seq, (text, when) in enumerate(said, start=1):
        turn = TurnInput(turn_id=f"t{seq}", user_message=text, agent_message="Noted.", timestamp=when)
        stored.append((await store.append_turn("alice", "s1", turn, T0)).turn)
    hits = await store.search_text("alice", "What did we plan for the garden on 8 May, 2023?", ALL_KINDS, 10)
    assert [h.seqs for h in hits] == [(1,), (2,)]
    assert hits[0].score > hits[1].score  # "8" is a word of the first turn's day only
    assert hits[0].text == stored[0].text()  # the date words are searched, never returned
    assert "May" not in hits[0].text
    next_day = await store.search_text("alice", "9 May", ALL_KINDS, 10)
    assert [h.seqs for h in next_day] == [(2,), (1,)] and next_day[0].score > next_day[1].score
    assert await store.search_text("bob", "8 May 2023", ALL_KINDS, 10) == []


@pytest.mark.parametrize(
    "query", ['"unbalanced', "AND OR NOT", "NEAR(a b)", "col:value*", "'; DROP TABLE items; --", "", "the a of"]
)
async def test_text_search_treats_query_syntax_as_plain_words(store: Store, query: str):
    await store.put_turns([make_turn("alice", "s1", 1, "drop table value col near")])
    hits = await store.search_text("alice", query, ALL_KINDS, limit=5)
    assert all(h.kind is MemoryKind.TURN for h in hits)
    assert await store.get_turns("alice", "s1")  # nothing was dropped


async def test_vector_search_returns_nearest_first_within_the_user(store: Store):
    await store.put_turns(
        [make_turn("alice", "s1", 1), make_turn("alice", "s1", 2), make_turn("alice", "s1", 3)],
        [unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(1, 1, 0, 0)],
    )
    await store.put_turns([make_turn("bob", "s1", 1)], [unit(1, 0, 0, 0)])
    hits = await store.search_vector("alice", unit(1, 0.1, 0, 0), ALL_KINDS, limit=2)
    assert [h.seqs for h in hits] == [(1,), (3,)]
    assert hits[0].score > hits[1].score
    assert hits[0].score == pytest.approx(unit(1, 0.1, 0, 0)[0], abs=1e-3)


async def test_vector_search_by_kind_and_without_superseded_insights(store: Store):
    await store.put_turns([make_turn("alice", "s1", 1)], [unit(1, 0, 0, 0)])
    await store.put_chunk(
        Chunk(user_id="alice", session_id="s1", index=0, first_seq=1, last_seq=10, summary="c", timestamp=T0),
        unit(1, 0, 0, 0.1),
    )
    await store.put_insights(
        [
            make_insight("alice", "a", "active fact"),
            make_insight("alice", "b", "retired fact", status="superseded"),
        ],
        [unit(0, 1, 0, 0), unit(1, 0, 0, 0)],
    )
    chunk_hits = await store.search_vector("alice", unit(1, 0, 0, 0), [MemoryKind.CHUNK], limit=5)
    assert [(h.kind, h.seqs) for h in chunk_hits] == [(MemoryKind.CHUNK, (1, 10))]
    insight_hits = await store.search_vector("alice", unit(1, 0, 0, 0), [MemoryKind.INSIGHT], limit=5)
    assert [h.text for h in insight_hits] == ["active fact"]


async def test_items_without_vectors_are_left_out_of_vector_search(store: Store):
    await store.put_turns([make_turn("alice", "s1", 1), make_turn("alice", "s1", 2)], [None, unit(0, 0, 1, 0)])
    hits = await store.search_vector("alice", unit(0, 0, 1, 0), ALL_KINDS, limit=5)
    assert [h.seqs for h in hits] == [(2,)]


# -- users ------------------------------------------------------------------------------------------------------


async def _fill(store: Store, user: str) -> None:
    await store.put_session(make_session(user, "s1", 1))
    await store.put_turns([make_turn(user, "s1", 1), make_turn(user, "s1", 2)], [unit(1, 0, 0, 0), None])
    await store.put_chunk(
        Chunk(user_id=user, session_id="s1", index=0, first_seq=1, last_seq=2, summary="chunk", timestamp=T0)
    )
    await store.put_summary(
        SessionSummary(
            user_id=user, session_id="s1", summary="sum", turn_count=2, first_seq=1, last_seq=2, created_at=T0
        )
    )
    await store.put_insights([make_insight(user, "k", "fact about the user")])


async def test_export_user_returns_everything_of_that_user_only(store: Store):
    await _fill(store, "alice")
    await _fill(store, "bob")
    export = await store.export_user("alice")
    assert export.user_id == "alice"
    assert (len(export.sessions), len(export.turns), len(export.chunks)) == (1, 2, 1)
    assert (len(export.summaries), len(export.insights)) == (1, 1)
    everything = [*export.sessions, *export.turns, *export.chunks, *export.summaries, *export.insights]
    assert all(item.user_id == "alice" for item in everything)


async def test_delete_user_removes_everything_and_leaves_others(store: Store):
    await _fill(store, "alice")
    await _fill(store, "bob")
    deleted = await store.delete_user("alice")
    assert (deleted.sessions, deleted.turns, deleted.chunks, deleted.summaries, deleted.insights) == (1, 2, 1, 1, 1)
    export = await store.export_user("alice")
    assert not (export.sessions or export.turns or export.chunks or export.summaries or export.insights)
    assert await store.search_text("alice", "message", ALL_KINDS, 5) == []
    assert await store.search_vector("alice", unit(1, 0, 0, 0), ALL_KINDS, 5) == []
    assert len((await store.export_user("bob")).turns) == 2
    assert await store.delete_user("alice") == type(deleted)()


# -- embedding identity -----------------------------------------------------------------------------------------


async def test_store_refuses_an_embedder_of_another_dimension(make_store):
    await make_store(dimensions=4)
    with pytest.raises(EmbeddingDimensionMismatchError, match="4"):
        await make_store(dimensions=8)
    with pytest.raises(EmbeddingDimensionMismatchError, match="other-model"):
        await make_store(embedding_model="other-model", dimensions=4)
    # no embedder (full-text only) opens fine on a store that has vectors
    await make_store(embedding_model=None, dimensions=None)
    await make_store(dimensions=4)


# -- the turn sequence: append, repeats, conflicts, concurrency -------------------------------------------------


def turn_input(turn_id: str, text: str = "hello", **extra) -> TurnInput:
    return TurnInput(turn_id=turn_id, user_message=text, agent_message="noted", **extra)


async def new_session(store: Store, user: str = "alice", session: str = "s1") -> SessionRecord:
    record = rules.new_record(user, session, T0)
    assert await store.create_session(record)
    return record


async def test_create_session_inserts_once(store: Store):
    record = await new_session(store)
    assert not await store.create_session(record.model_copy(update={"turn_count": 7}))
    assert (await store.get_session("alice", "s1")) == record


async def test_append_numbers_turns_in_order_and_counts_them_in_the_record(store: Store):
    await new_session(store)
    outcomes = [
        await store.append_turn("alice", "s1", turn_input(f"t{i}", f"turn {i}"), T0 + timedelta(seconds=i))
        for i in range(1, 4)
    ]
    assert [o.turn.seq for o in outcomes] == [1, 2, 3]
    assert not any(o.duplicate for o in outcomes)
    assert outcomes[-1].record.turn_count == 3
    record = await store.get_session("alice", "s1")
    assert record is not None and record.turn_count == 3
    assert record.last_activity == T0 + timedelta(seconds=3)
    stored = await store.get_turns("alice", "s1")
    assert [(t.seq, t.turn_id, t.user_message) for t in stored] == [
        (1, "t1", "turn 1"),
        (2, "t2", "turn 2"),
        (3, "t3", "turn 3"),
    ]
    # a turn without a timestamp gets the time it was stored
    assert stored[0].timestamp == T0 + timedelta(seconds=1)


async def test_append_keeps_the_callers_timestamp_and_metadata(store: Store):
    await new_session(store)
    when = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    outcome = await store.append_turn("alice", "s1", turn_input("t1", timestamp=when, metadata={"k": [1, "ü"]}), T0)
    (stored,) = await store.get_turns("alice", "s1")
    assert stored == outcome.turn
    assert stored.timestamp == when and stored.metadata == {"k": [1, "ü"]}


async def test_a_repeated_turn_id_is_the_same_turn_however_late(store: Store):
    await new_session(store)
    first = await store.append_turn("alice", "s1", turn_input("early", "remember me"), T0)
    for i in range(30):
        await store.append_turn("alice", "s1", turn_input(f"t{i}"), T0)
    again = await store.append_turn("alice", "s1", turn_input("early", "remember me"), T0 + timedelta(hours=1))
    assert again.duplicate and again.turn == first.turn
    record = await store.get_session("alice", "s1")
    assert record is not None and record.turn_count == 31  # nothing written for the repeat
    assert record.last_activity == T0
    assert len(await store.get_turns("alice", "s1")) == 31
    assert await store.get_turn("alice", "s1", "early") == first.turn
    assert await store.get_turn("alice", "s1", "never") is None
    assert await store.get_turn("alice", "other", "early") is None


@pytest.mark.parametrize(
    ("changed", "field"),
    [({"user_message": "something else"}, "user_message"), ({"agent_message": "another reply"}, "agent_message")],
)
async def test_a_repeated_turn_id_with_other_content_is_a_conflict_naming_the_field(store: Store, changed, field):
    await new_session(store)
    original = TurnInput(turn_id="t1", user_message="hello", agent_message="noted", timestamp=T0, metadata={"k": 1})
    await store.append_turn("alice", "s1", original, T0)
    with pytest.raises(ConflictError) as raised:
        await store.append_turn("alice", "s1", original.model_copy(update=changed), T0)
    assert raised.value.field == field
    # a repeat with the same messages is the same turn, whatever its timestamp and metadata: the stored ones stand
    other_time = original.model_copy(update={"timestamp": T0 + timedelta(days=1), "metadata": {"k": 2}})
    for repeat_input in (TurnInput(turn_id="t1", user_message="hello", agent_message="noted"), other_time):
        repeat = await store.append_turn("alice", "s1", repeat_input, T0)
        assert repeat.duplicate and repeat.turn.timestamp == T0 and repeat.turn.metadata == {"k": 1}
    assert (await store.get_session("alice", "s1")).turn_count == 1


async def test_append_to_an_unknown_or_ended_session_is_refused_and_writes_nothing(store: Store):
    with pytest.raises(SessionNotFoundError):
        await store.append_turn("alice", "nope", turn_input("t1"), T0)
    await new_session(store)
    await store.append_turn("alice", "s1", turn_input("t1"), T0)
    ended = await store.update_session("alice", "s1", lambda r: rules.end(r, T0))
    assert ended.changed and ended.record is not None and ended.record.status is SessionStatus.ENDED
    with pytest.raises(SessionEndedError):
        await store.append_turn("alice", "s1", turn_input("t2"), T0)
    # a repeat of a turn stored before the end is still that turn
    assert (await store.append_turn("alice", "s1", turn_input("t1"), T0)).duplicate
    assert [t.turn_id for t in await store.get_turns("alice", "s1")] == ["t1"]
    assert await store.get_turns("alice", "nope") == []


async def test_appending_to_an_idle_session_makes_it_active_again(store: Store):
    await new_session(store)
    await store.update_session("alice", "s1", lambda r: rules.mark_idle(r, T0))
    assert (await store.get_session("alice", "s1")).status is SessionStatus.IDLE
    outcome = await store.append_turn("alice", "s1", turn_input("t1"), T0 + timedelta(minutes=1))
    assert outcome.record.status is SessionStatus.ACTIVE


async def test_concurrent_appends_get_contiguous_numbers_and_repeats_store_once(make_store):
    # Two clients of the same data (two workers), many writers each, some sending the same turn twice at once.
    first, second = await make_store(), await make_store()
    await new_session(first)

    async def writer(store: Store, n: int) -> list[int]:
        seqs = []
        for i in range(5):
            outcome = await store.append_turn("alice", "s1", turn_input(f"w{n}-{i}", f"writer {n} turn {i}"), T0)
            seqs.append(outcome.turn.seq)
        return seqs

    async def repeat(store: Store, n: int) -> int:
        outcome = await store.append_turn("alice", "s1", turn_input(f"w{n}-0", f"writer {n} turn 0"), T0)
        return outcome.turn.seq

    writers = [writer(first if n % 2 else second, n) for n in range(8)]
    repeats = [repeat(second if n % 2 else first, n) for n in range(8)]
    results = await asyncio.gather(*writers, *repeats)
    stored = await first.get_turns("alice", "s1")
    assert [t.seq for t in stored] == list(range(1, 41))
    assert sorted(t.turn_id for t in stored) == sorted(f"w{n}-{i}" for n in range(8) for i in range(5))
    for n, seqs in enumerate(results[:8]):
        assert seqs == sorted(seqs), "a writer's turns are numbered in the order it sent them"
        assert results[8 + n] == next(t.seq for t in stored if t.turn_id == f"w{n}-0")
    assert (await second.get_session("alice", "s1")).turn_count == 40


# -- record updates, scans and figures --------------------------------------------------------------------------


async def test_update_session_applies_the_transition_or_reports_no_change(store: Store):
    assert (await store.update_session("alice", "none", lambda r: rules.end(r, T0))).record is None
    await new_session(store)
    done = await store.update_session("alice", "s1", lambda r: rules.end(r, T0 + timedelta(minutes=5)))
    assert done.changed and done.record.ended_at == T0 + timedelta(minutes=5)
    again = await store.update_session("alice", "s1", lambda r: rules.end(r, T0 + timedelta(minutes=9)))
    assert not again.changed and again.record == done.record
    assert await store.get_session("alice", "s1") == done.record


async def test_concurrent_updates_and_appends_lose_nothing(make_store):
    first, second = await make_store(), await make_store()
    await new_session(first)

    async def appends(store: Store) -> None:
        for i in range(10):
            await store.append_turn("alice", "s1", turn_input(f"{id(store)}-{i}"), T0)

    async def indexing(store: Store) -> None:
        for through in range(1, 11):
            await store.update_session("alice", "s1", lambda r, t=through: rules.record_indexed(r, t, t))

    await asyncio.gather(appends(first), appends(second), indexing(second), indexing(first))
    record = await first.get_session("alice", "s1")
    assert record.turn_count == 20
    assert record.indexed_through == 10 and record.indexed_ahead == ()


async def test_scan_sessions_across_users_oldest_first_with_filters(store: Store):
    for user, session, minutes in [("alice", "a1", 30), ("bob", "b1", 10), ("carol", "c1", 20), ("bob", "b2", 40)]:
        record = rules.new_record(user, session, T0 + timedelta(minutes=minutes))
        await store.create_session(record)
    for i in range(12):
        await store.append_turn("carol", "c1", turn_input(f"t{i}"), T0 + timedelta(minutes=20))
    await store.update_session("bob", "b2", lambda r: rules.end(r, T0 + timedelta(minutes=40)))

    active = await store.scan_sessions(SessionStatus.ACTIVE)
    assert [(r.user_id, r.session_id) for r in active] == [("bob", "b1"), ("carol", "c1"), ("alice", "a1")]
    idle = await store.scan_sessions(SessionStatus.ACTIVE, idle_before=T0 + timedelta(minutes=25))
    assert [r.session_id for r in idle] == ["b1", "c1"]
    assert [r.session_id for r in await store.scan_sessions(SessionStatus.ACTIVE, limit=1)] == ["b1"]
    lagging = await store.scan_sessions(SessionStatus.ACTIVE, lagging_by=10)
    assert [r.session_id for r in lagging] == ["c1"]
    unreflected = await store.scan_sessions(SessionStatus.ENDED, unreflected=True)
    assert [r.session_id for r in unreflected] == ["b2"]
    await store.update_session("bob", "b2", lambda r: rules.record_reflected(r, T0))
    assert await store.scan_sessions(SessionStatus.ENDED, unreflected=True) == []


async def test_recent_sessions_across_users_and_statuses_newest_first(store: Store):
    assert await store.recent_sessions() == []
    for user, session, minutes in [("alice", "a1", 30), ("bob", "b1", 10), ("carol", "c1", 20), ("bob", "b2", 40)]:
        await store.create_session(rules.new_record(user, session, T0 + timedelta(minutes=minutes)))
    await store.update_session("bob", "b2", lambda r: rules.end(r, T0 + timedelta(minutes=40)))
    await store.append_turn("bob", "b1", turn_input("t0"), T0 + timedelta(minutes=50))

    recent = await store.recent_sessions()
    assert [(r.user_id, r.session_id) for r in recent] == [
        ("bob", "b1"),
        ("bob", "b2"),
        ("alice", "a1"),
        ("carol", "c1"),
    ]
    assert [r.status for r in recent] == [
        SessionStatus.ACTIVE,
        SessionStatus.ENDED,
        SessionStatus.ACTIVE,
        SessionStatus.ACTIVE,
    ]
    assert recent[0].turn_count == 1
    assert [r.session_id for r in await store.recent_sessions(limit=2)] == ["b1", "b2"]


async def test_session_figures_count_lag_and_activity(store: Store):
    empty = await store.session_figures(SessionStatus.ACTIVE, lagging_by=10)
    assert empty.count == 0 and empty.lagging == 0 and empty.oldest_activity is None and empty.mean_activity is None
    for user, minutes in [("alice", 10), ("bob", 20), ("carol", 60)]:
        await store.create_session(rules.new_record(user, "s", T0 + timedelta(minutes=minutes)))
    for i in range(10):
        await store.append_turn("carol", "s", turn_input(f"t{i}"), T0 + timedelta(minutes=60))
    await store.update_session("alice", "s", lambda r: rules.end(r, T0 + timedelta(minutes=10)))
    figures = await store.session_figures(SessionStatus.ACTIVE, lagging_by=10)
    assert figures.count == 2 and figures.lagging == 1
    assert figures.oldest_activity == T0 + timedelta(minutes=20)
    assert abs((figures.mean_activity - (T0 + timedelta(minutes=40))).total_seconds()) < 0.01


async def test_claim_cleanup_once_per_interval_across_clients(make_store):
    first, second = await make_store(), await make_store()
    assert await first.claim_cleanup(T0, 60)
    assert not await second.claim_cleanup(T0 + timedelta(seconds=30), 60)
    assert await second.claim_cleanup(T0 + timedelta(seconds=61), 60)
    assert not await first.claim_cleanup(T0 + timedelta(seconds=62), 60)


async def test_turn_embeddings_added_later_keep_the_turn(store: Store):
    await new_session(store)
    outcome = await store.append_turn("alice", "s1", turn_input("t1", "the quick brown fox"), T0)
    assert await store.search_vector("alice", unit(1, 0, 0, 0), ALL_KINDS, 5) == []
    assert [h.text for h in await store.search_text("alice", "fox", ALL_KINDS, 5)] == [outcome.turn.text()]
    await store.put_turns([outcome.turn], [unit(1, 0, 0, 0)])
    (hit,) = await store.search_vector("alice", unit(1, 0, 0, 0), ALL_KINDS, 5)
    assert hit.seqs == (1,)
    assert await store.get_turns("alice", "s1") == [outcome.turn]


async def test_vectors_are_added_to_stored_turns_only_and_never_bring_one_back(store: Store):
    await new_session(store)
    first = (await store.append_turn("alice", "s1", turn_input("t1", "the quick brown fox"), T0)).turn
    second = (await store.append_turn("alice", "s1", turn_input("t2", "a lazy dog"), T0)).turn
    assert await store.set_turn_vectors([first, second], [unit(1, 0, 0, 0), unit(0, 1, 0, 0)]) == 2
    hits = await store.search_vector("alice", unit(0, 1, 0, 0), ALL_KINDS, 5)
    assert [h.seqs for h in hits] == [(2,), (1,)]
    assert [h.text for h in await store.search_text("alice", "fox", ALL_KINDS, 5)] == [first.text()]
    assert await store.get_turns("alice", "s1") == [first, second]
    await store.delete_user("alice")
    # A batch that read the turns before the user was forgotten writes its vectors after: nothing comes back.
    assert await store.set_turn_vectors([first], [unit(1, 0, 0, 0)]) == 0
    assert await store.get_turns("alice", "s1") == []
    assert await store.search_vector("alice", unit(1, 0, 0, 0), ALL_KINDS, 5) == []


async def test_no_limit_lists_every_session_and_insight_past_the_default_page(store: Store):
    # Forget needs every session of a user and reflection every insight: limit None is all, not the first 100.
    for n in range(130):
        await store.put_session(make_session("alice", f"s{n:03d}", n))
    await store.put_insights([make_insight("alice", f"key-{n}", f"fact number {n}", minutes=n) for n in range(120)])
    assert len(await store.list_sessions("alice")) == 100
    sessions = await store.list_sessions("alice", limit=None)
    assert [s.session_id for s in sessions] == [f"s{n:03d}" for n in reversed(range(130))]
    assert len(await store.get_insights("alice")) == 100
    assert len(await store.get_insights("alice", include_superseded=True, limit=None)) == 120
