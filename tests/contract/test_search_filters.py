"""Search filters (``ItemFilter``) on both stores: by session, by time, and what was believed as of a time.

Each filter is applied inside the store's query, so a search asked for ``limit`` hits gets that many whenever that
many match, however many better-ranked items the filter leaves out.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from memory_core.domain import Chunk, Insight, ItemFilter, MemoryKind, SessionSummary, stable_id
from memory_core.ports import Store
from tests.contract.test_store_contract import ALL_KINDS, T0, make_turn, unit

DAY = timedelta(days=1)


def insight(key: str, text: str, valid_from_days: int, valid_to_days: int | None, vector_x: float = 1.0) -> Insight:
    return Insight(
        id=stable_id("insight", "alice", key, text),
        user_id="alice",
        key=key,
        category="fact",
        text=text,
        source_session_id="s1",
        source_turns=(1,),
        status="active" if valid_to_days is None else "superseded",
        valid_from=T0 + valid_from_days * DAY,
        valid_to=None if valid_to_days is None else T0 + valid_to_days * DAY,
        created_at=T0 + valid_from_days * DAY,
        updated_at=T0 + (valid_to_days if valid_to_days is not None else valid_from_days) * DAY,
    )


async def fill(store: Store) -> None:
    """Alice: turns about Lisbon on days 0-5 across three sessions, a chunk, a summary, and where she lived when."""
    turns = [
        make_turn("alice", f"s{day // 2 + 1}", day + 1, f"Lisbon trip plan, day {day}", minutes=day * 24 * 60)
        for day in range(6)
    ]
    await store.put_turns(turns, [unit(1, 0, 0, 0.01 * day) for day in range(6)])
    await store.put_turns([make_turn("bob", "s1", 1, "Lisbon for bob", minutes=60)], [unit(1, 0, 0, 0)])
    await store.put_chunk(
        Chunk(user_id="alice", session_id="s1", index=0, first_seq=1, last_seq=2, summary="Lisbon chunk", timestamp=T0),
        unit(1, 0, 0, 0.2),
    )
    await store.put_summary(
        SessionSummary(
            user_id="alice",
            session_id="s2",
            summary="A session about Lisbon",
            turn_count=2,
            first_seq=3,
            last_seq=4,
            created_at=T0 + 3 * DAY,
        ),
        unit(1, 0, 0, 0.3),
    )
    await store.put_insights(
        [
            insight("location", "The user lives in Lisbon with a view of Porto.", 0, 10),  # superseded on day 10
            insight("location", "The user lives in Porto now, far from Lisbon.", 10, None),
        ],
        [unit(1, 0, 0, 0.4), unit(1, 0, 0, 0.5)],
    )


async def both(store: Store, kinds: list[MemoryKind], where: ItemFilter, limit: int = 20) -> tuple[list, list]:
    text = await store.search_text("alice", "Lisbon", kinds, limit, where)
    vector = await store.search_vector("alice", unit(1, 0, 0, 0), kinds, limit, where)
    return text, vector


async def test_no_filter_is_the_plain_search(store: Store):
    await fill(store)
    for hits in await both(store, ALL_KINDS, ItemFilter()):
        assert {h.kind for h in hits} == set(MemoryKind)
        insights = [h.text for h in hits if h.kind is MemoryKind.INSIGHT]
        assert insights == ["The user lives in Porto now, far from Lisbon."]


async def test_session_ids_keep_those_sessions_items_only(store: Store):
    await fill(store)
    for hits in await both(store, ALL_KINDS, ItemFilter(session_ids=("s2",))):
        assert hits and {h.session_id for h in hits} == {"s2"}
        assert {h.kind for h in hits} == {MemoryKind.TURN, MemoryKind.SUMMARY}
    for hits in await both(store, ALL_KINDS, ItemFilter(session_ids=())):
        assert hits == []


async def test_since_is_inclusive_and_until_exclusive_on_each_items_time(store: Store):
    await fill(store)
    where = ItemFilter(since=T0 + 2 * DAY, until=T0 + 4 * DAY)
    for hits in await both(store, [MemoryKind.TURN], where):
        assert sorted(h.seqs for h in hits) == [(3,), (4,)]  # days 2 and 3
    for hits in await both(store, [MemoryKind.SUMMARY, MemoryKind.CHUNK], ItemFilter(since=T0 + DAY)):
        assert [h.kind for h in hits] == [MemoryKind.SUMMARY]  # the chunk's time is day 0


async def test_as_of_finds_what_was_believed_then(store: Store):
    await fill(store)
    believed = {
        5: "The user lives in Lisbon with a view of Porto.",
        12: "The user lives in Porto now, far from Lisbon.",
    }
    for day, expected in believed.items():
        for hits in await both(store, [MemoryKind.INSIGHT], ItemFilter(as_of=T0 + day * DAY)):
            assert [h.text for h in hits] == [expected], day
    for hits in await both(store, [MemoryKind.INSIGHT], ItemFilter(as_of=T0 - DAY)):
        assert hits == []  # nothing was known yet
    for hits in await both(store, [MemoryKind.TURN], ItemFilter(as_of=T0 + DAY)):
        assert sorted(h.seqs for h in hits) == [(1,), (2,)]  # turns up to day 1


async def test_a_filter_still_fills_the_limit_past_better_ranked_items_it_leaves_out(store: Store):
    await fill(store)
    # The best-ranked vectors are the early turns; the last session's turns come last but the limit is met.
    text, vector = await both(store, [MemoryKind.TURN], ItemFilter(session_ids=("s3",)), limit=2)
    assert sorted(h.seqs for h in text) == [(5,), (6,)]
    assert sorted(h.seqs for h in vector) == [(5,), (6,)]


@pytest.mark.parametrize("kinds", [[MemoryKind.TURN], ALL_KINDS])
async def test_filters_stay_in_the_users_memory(store: Store, kinds: list[MemoryKind]):
    await fill(store)
    where = ItemFilter(session_ids=("s1",), since=T0, until=T0 + 30 * DAY, as_of=T0 + 30 * DAY)
    text = await store.search_text("bob", "Lisbon", kinds, 10, where)
    vector = await store.search_vector("bob", unit(1, 0, 0, 0), kinds, 10, where)
    for hits in (text, vector):
        assert len(hits) == 1 and "Lisbon for bob" in hits[0].text
