"""``/memory/retrieve`` with a budget and filters, through the service, on both stores.

The budget is applied by ``memory_core`` to what the store's searches return, so it must hold whatever the store:
results that fit ``max_tokens`` together, a long item cut to the passage that matched (verbatim), nothing said twice,
and the filters still pushed into the store's queries.
"""

from __future__ import annotations

from datetime import timedelta

from memory_core.config import Settings
from memory_core.context import default_counter
from memory_core.domain import Chunk, MemoryKind, SessionSummary
from memory_core.models import RetrieveRequest
from memory_core.service import MemoryService
from tests.contract.conftest import StoreFactory
from tests.contract.test_store_contract import T0, make_turn
from tests.support.fakes import FakeChatModel, HashingEmbedder

SUMMARY = (
    "Alice spent the morning repairing her bicycle. "
    "She then booked a ferry to the island of Madeira for the spring. "
    "In the evening she cooked a vegetable curry for her neighbours. "
    "Later she wrote to her sister about the garden."
)


async def _service(make_store: StoreFactory) -> MemoryService:
    embedder = HashingEmbedder()
    store = await make_store(embedder.model, embedder.dimensions)
    turns = [
        make_turn("alice", "s1", 1, "I booked the ferry to Madeira today", minutes=1),
        make_turn("alice", "s1", 2, "The curry needs more ginger next time", minutes=2),
        make_turn("alice", "s2", 3, "Madeira in spring, ferry from Lisbon", minutes=60 * 24),
        make_turn("bob", "s1", 1, "Bob also took the ferry to Madeira", minutes=3),
    ]
    await store.put_turns(turns, await embedder.embed([t.text() for t in turns]))
    summary = SessionSummary(
        user_id="alice", session_id="s1", summary=SUMMARY, turn_count=2, first_seq=1, last_seq=2, created_at=T0
    )
    await store.put_summary(summary, (await embedder.embed([SUMMARY]))[0])
    # A chunk that only repeats the first turn: the budget gives those words once.
    repeat = turns[0].text()
    chunk = Chunk(user_id="alice", session_id="s1", index=0, first_seq=1, last_seq=1, summary=repeat, timestamp=T0)
    await store.put_chunk(chunk, (await embedder.embed([repeat]))[0])
    return MemoryService(Settings(), store, FakeChatModel(), embedder)


async def test_a_budget_keeps_what_fits_cut_to_what_matched_and_says_nothing_twice(make_store: StoreFactory):
    service = await _service(make_store)
    reply = await service.retrieve(RetrieveRequest(user_id="alice", query="ferry to Madeira", max_tokens=60))
    count = default_counter().count
    assert reply.items and reply.tokens <= 60
    assert reply.tokens == sum(count(item.text) for item in reply.items)
    assert reply.facts == [item.text for item in reply.items] and reply.count == len(reply.items)
    texts = [item.text.strip() for item in reply.items]
    assert len(texts) == len(set(texts))
    # Alice's turns about it (the second without the "Assistant: noted" the first gave already), never Bob's.
    turns = {tuple(i.turn_seqs): i.text for i in reply.items if i.kind is MemoryKind.TURN}
    assert "User: I booked the ferry to Madeira today\nAssistant: noted" == turns[(1,)]
    assert turns[(3,)].strip() == "User: Madeira in spring, ferry from Lisbon"
    assert not any("Bob" in t for t in texts)
    assert not any(item.kind is MemoryKind.CHUNK for item in reply.items)  # it repeats the turn given already
    (summary,) = [item for item in reply.items if item.kind is MemoryKind.SUMMARY]
    assert summary.excerpt and summary.text.strip() in SUMMARY and "Madeira" in summary.text
    assert "bicycle" not in summary.text and "curry" not in summary.text


async def test_a_budget_too_small_for_any_item_returns_nothing_rather_than_too_much(make_store: StoreFactory):
    service = await _service(make_store)
    reply = await service.retrieve(RetrieveRequest(user_id="alice", query="ferry to Madeira", max_tokens=3))
    assert (reply.items, reply.tokens, reply.count) == ([], 0, 0)


async def test_filters_and_the_budget_together_stay_in_the_chosen_session_and_time(make_store: StoreFactory):
    service = await _service(make_store)
    in_s2 = await service.retrieve(
        RetrieveRequest(user_id="alice", query="ferry to Madeira", max_tokens=200, session_ids=["s2"])
    )
    assert [(item.kind, item.session_id) for item in in_s2.items] == [(MemoryKind.TURN, "s2")]
    first_day = await service.retrieve(
        RetrieveRequest(
            user_id="alice",
            query="ferry Madeira curry",
            max_tokens=200,
            kinds=["turn"],
            until=(T0 + timedelta(hours=1)).isoformat(),
        )
    )
    assert {tuple(item.turn_seqs) for item in first_day.items} == {(1,), (2,)}
    assert all(item.kind is MemoryKind.TURN and item.session_id == "s1" for item in first_day.items)
