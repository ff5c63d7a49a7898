from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memory_core import session as rules
from memory_core.adapters.sqlite import SqliteStore
from memory_core.config import Settings
from memory_core.domain import MemoryKind, SessionStatus
from memory_core.errors import ConflictError, NotFoundError, SessionEndedError, SessionNotFoundError
from memory_core.models import InsightsRequest, RetrieveRequest, SummariesRequest
from memory_core.ports import InsightCandidate
from memory_core.service import MemoryService
from memory_core.session import HotSession, TurnInput
from tests.support.fakes import FakeChatModel, HashingEmbedder

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
TOPICS = ["retirement savings", "a 401k plan", "index funds", "the dog", "hiking trips"]
K, L = 3, 4


@pytest.fixture
async def service(tmp_path: Path):
    settings = Settings(K_TURN_BUFFER=K, L_TURN_CHUNKS=L, REFLECTION_THRESHOLD_TURNS=6, M_SESSIONS_RECENT=3)
    embedder = HashingEmbedder()
    store = SqliteStore(tmp_path / "m.sqlite3")
    await store.open(embedder.model, embedder.dimensions)
    chat = FakeChatModel(
        {
            2: [InsightCandidate(key="location", category="place", text="The user lives in Porto.", source_turns=[2])],
            7: [InsightCandidate(key="location", category="place", text="The user lives in Lisbon.", source_turns=[7])],
        }
    )
    svc = MemoryService(settings, store, chat, embedder)
    yield svc
    await svc.close()


def turn(i: int) -> TurnInput:
    return TurnInput(
        turn_id=f"t{i}",
        user_message=f"Tell me about {TOPICS[i % len(TOPICS)]} (turn {i})",
        agent_message="Here is what I know.",
        timestamp=T0 + timedelta(minutes=i),
    )


async def background(svc: MemoryService, user: str, session: str, through: int | None, state: HotSession | None):
    """What the batch orchestration does: index, then compact every due chunk as the session entity hands it out."""
    snapshot = await svc.index_turns(user, session, through)
    assert snapshot is not None
    state, claim = rules.sync(state, snapshot, K, L)
    while claim is not None:
        done = await svc.compact(claim, T0)
        state, claim = rules.apply_compaction(state, done, K, L)
    return state


async def play(svc: MemoryService, user: str, session: str, count: int, start: int = 1) -> HotSession | None:
    """Store turns as /memory/store does, running each batch's background work when the batch completes."""
    state = None
    for i in range(start, start + count):
        outcome = await svc.append_turn(user, session, turn(i), T0 + timedelta(minutes=i))
        if rules.batch_due(outcome.turn.seq, K, L):
            state = await background(svc, user, session, outcome.turn.seq, state)
    return state


async def test_new_session_gets_an_id_and_is_recorded(service: MemoryService):
    record, restored = await service.start_session("alice", None, restore=True, now=T0)
    assert len(record.session_id) == 32 and not restored
    stored = await service.store.get_session("alice", record.session_id)
    assert stored == record and stored.status is SessionStatus.ACTIVE


async def test_start_with_an_unknown_id_starts_that_session_as_the_guides_client_expects(service: MemoryService):
    record, restored = await service.start_session("alice", "client-chosen", restore=True, now=T0)
    assert record.session_id == "client-chosen" and not restored
    again, restored = await service.start_session("alice", "client-chosen", restore=True, now=T0)
    assert again == record and not restored


async def test_an_ended_session_is_not_found_and_its_id_stays_taken(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await service.end_session("alice", "s1", T0)
    with pytest.raises(SessionNotFoundError):
        await service.start_session("alice", "s1", restore=True, now=T0)
    with pytest.raises(ConflictError):
        await service.start_session("alice", "s1", restore=False, now=T0)
    with pytest.raises(SessionNotFoundError):
        await service.open_session("alice", "s1", T0)


async def test_creating_a_session_under_a_taken_id_is_a_conflict(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    with pytest.raises(ConflictError) as raised:
        await service.start_session("alice", "s1", restore=False, now=T0)
    assert raised.value.field == "session_id"


async def test_every_stored_turn_is_in_the_context_at_once(service: MemoryService):
    record, _ = await service.start_session("alice", "s1", restore=False, now=T0)
    for i in range(1, 4):
        await service.append_turn("alice", "s1", turn(i), T0)
        record, _ = await service.open_session("alice", "s1", T0)
        context = await service.context(record, False)
        assert context.turn_count == i
        assert context.active_context[-2].content == turn(i).user_message


async def test_context_shows_the_last_k_turns_and_the_folded_summary(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await play(service, "alice", "s1", 9)
    record, _ = await service.open_session("alice", "s1", T0)
    assert record.compacted_through == 4 and record.cumulative_summary == "turns 1-4"
    context = await service.context(record, False)
    assert [m.content for m in context.active_context if m.role == "user"] == [turn(i).user_message for i in (7, 8, 9)]
    assert context.cumulative_summary == "turns 1-4" and context.turn_count == 9
    assert "turns 1-4" in context.formatted_context


async def test_after_turn_id_must_name_a_turn_of_the_session(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await play(service, "alice", "s1", 6)
    record, _ = await service.open_session("alice", "s1", T0)
    assert (await service.context(record, False, after_turn_id="t6")).turn_count == 6
    assert (await service.context(record, False, after_turn_id="t1")).turn_count == 6  # older than the recent K
    with pytest.raises(NotFoundError) as raised:
        await service.context(record, False, after_turn_id="never-sent")
    assert raised.value.field == "after_turn_id"


async def test_evicted_session_restores_cold_with_summary_and_recent_turns(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await play(service, "alice", "s1", 9)
    assert await service.evict("alice", "s1", T0 + timedelta(minutes=30))
    record = await service.store.get_session("alice", "s1")
    assert record.status is SessionStatus.IDLE
    record, restored = await service.open_session("alice", "s1", T0 + timedelta(hours=1))
    assert restored and record.status is SessionStatus.ACTIVE
    context = await service.context(record, restored)
    assert context.restored and context.turn_count == 9
    assert [m.role for m in context.active_context] == ["user", "assistant"] * K
    assert "turn 9" in context.formatted_context and "turns 1-4" in context.formatted_context
    _, again = await service.open_session("alice", "s1", T0 + timedelta(hours=1))
    assert not again  # hot now


async def test_eviction_keeps_a_session_that_was_active_after_the_cutoff(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await service.append_turn("alice", "s1", turn(1), T0 + timedelta(minutes=10))
    assert not await service.evict("alice", "s1", T0 + timedelta(minutes=5))
    assert (await service.store.get_session("alice", "s1")).status is SessionStatus.ACTIVE


async def test_indexing_adds_vectors_to_the_batch_and_reports_a_bounded_snapshot(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    for i in range(1, 7):
        await service.append_turn("alice", "s1", turn(i), T0)
    vector = (await service.embedder.embed(["hiking trips"]))[0]
    assert await service.store.search_vector("alice", vector, list(MemoryKind), 10) == []
    snapshot = await service.index_turns("alice", "s1", 4)
    assert snapshot.indexed_through == 4 and snapshot.turn_count == 6
    assert [r.turn_id for r in snapshot.recent] == ["t4", "t5", "t6"]
    hits = await service.store.search_vector("alice", vector, list(MemoryKind), 10)
    assert sorted(h.seqs[0] for h in hits) == [1, 2, 3, 4]
    assert (await service.index_turns("alice", "s1", None)).indexed_through == 6
    assert await service.index_turns("alice", "gone", None) is None


async def test_final_indexing_fills_every_gap_the_batches_left(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    for i in range(1, 20):
        await service.append_turn("alice", "s1", turn(i), T0)
    # K=3, L=4: batches end at 7, 11, 15, 19. Only the one of 12-15 ran (the others are still queued, or were lost).
    assert (await service.index_turns("alice", "s1", 15)).indexed_through == 0
    assert (await service.store.get_session("alice", "s1")).indexed_ahead == ((12, 15),)
    calls = service.embedder.calls
    snapshot = await service.index_turns("alice", "s1", None)  # eviction or the end of the session
    assert snapshot.indexed_through == 19
    assert service.embedder.calls == calls + 2  # 1-11 and 16-19: nothing embedded twice
    vector = (await service.embedder.embed(["Tell me about"]))[0]
    hits = await service.store.search_vector("alice", vector, [MemoryKind.TURN], 50)
    assert sorted(h.seqs[0] for h in hits) == list(range(1, 20))


async def test_a_chunk_is_compacted_once_whoever_repeats_it(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    for i in range(1, 9):
        await service.append_turn("alice", "s1", turn(i), T0)
    claim = rules.Claim(user_id="alice", session_id="s1", index=0, first_seq=1, last_seq=4)
    done = await service.compact(claim, T0)
    assert (done.chunk_count, done.through_seq, done.summary) == (1, 4, "turns 1-4")
    calls = len(service.chat.calls)
    assert await service.compact(claim, T0) == done  # a retry or replay: nothing is summarised again
    assert len(service.chat.calls) == calls
    assert [c.index for c in await service.store.get_chunks("alice", "s1")] == [0]
    skipped = rules.Claim(user_id="alice", session_id="s1", index=2, first_seq=9, last_seq=12)
    assert await service.compact(skipped, T0) == done  # not the next chunk: the store's state is the answer


async def test_a_claim_of_several_chunks_folds_each_in_order_and_a_retry_goes_on_where_it_stopped(
    service: MemoryService,
):
    await service.start_session("alice", "s1", restore=False, now=T0)
    for i in range(1, 15):
        await service.append_turn("alice", "s1", turn(i), T0)
    first = rules.Claim(user_id="alice", session_id="s1", index=0, first_seq=1, last_seq=4)
    await service.compact(first, T0)  # as if the activity of a 3-chunk claim failed after its first chunk
    calls = len(service.chat.calls)
    claim = rules.Claim(user_id="alice", session_id="s1", index=0, first_seq=1, last_seq=12, chunks=3)
    done = await service.compact(claim, T0)
    assert (done.chunk_count, done.through_seq) == (3, 12)
    assert len(service.chat.calls) == calls + 4  # two summaries for each of chunks 1 and 2; chunk 0 not again
    chunks = await service.store.get_chunks("alice", "s1")
    assert [(c.index, c.first_seq, c.last_seq) for c in chunks] == [(0, 1, 4), (1, 5, 8), (2, 9, 12)]
    assert await service.compact(claim, T0) == done


async def test_ending_refuses_later_turns_and_keeps_every_earlier_one(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await service.append_turn("alice", "s1", turn(1), T0)
    record = await service.end_session("alice", "s1", T0 + timedelta(minutes=1))
    assert record.status is SessionStatus.ENDED and record.ended_at == T0 + timedelta(minutes=1)
    assert (await service.end_session("alice", "s1", T0 + timedelta(minutes=5))).ended_at == record.ended_at
    with pytest.raises(SessionEndedError):
        await service.append_turn("alice", "s1", turn(2), T0)
    assert (await service.append_turn("alice", "s1", turn(1), T0)).duplicate  # a late retry of a stored turn
    with pytest.raises(SessionNotFoundError):
        await service.end_session("alice", "missing", T0)


async def test_reflection_writes_summary_and_insights_once(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await play(service, "alice", "s1", 9)
    await service.end_session("alice", "s1", T0)
    outcome = await service.reflect("alice", "s1", T0 + timedelta(hours=1))
    assert outcome.summary_id and outcome.turn_count == 9
    assert len(outcome.insights_added) == 2  # Porto, then Lisbon superseding it within the session
    assert (await service.store.get_session("alice", "s1")).reflected_at == T0 + timedelta(hours=1)
    again = await service.reflect("alice", "s1", T0 + timedelta(hours=2))
    assert again.insights_added == again.insights_updated == again.insights_superseded == []
    assert again.summary_id == outcome.summary_id
    insights = await service.insights(InsightsRequest(user_id="alice"))
    assert insights.insights == ["The user lives in Lisbon."]
    everything = await service.insights(InsightsRequest(user_id="alice", include_superseded=True))
    assert {i.status for i in everything.items} == {"active", "superseded"}
    summaries = await service.summaries(SummariesRequest(user_id="alice"))
    assert summaries.count == 1 and summaries.items[0].session_id == "s1"


async def test_short_session_gets_a_short_summary_and_no_insights(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await play(service, "alice", "s1", 3)
    outcome = await service.reflect("alice", "s1", T0)
    assert outcome.summary and "60 words" in outcome.summary
    assert outcome.insights_added == []
    assert ("extract_insights", (1, 2, 3)) not in service.chat.calls  # type: ignore[attr-defined]


async def test_context_shows_other_sessions_summaries_and_insights(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await play(service, "alice", "s1", 8)
    await service.reflect("alice", "s1", T0)
    second, _ = await service.start_session("alice", "s2", restore=False, now=T0 + timedelta(days=1))
    context = await service.context(second, False)
    assert context.insights == ["The user lives in Lisbon."]
    assert len(context.session_summaries) == 1
    assert "Lisbon" in context.formatted_context


async def test_retrieve_returns_facts_with_provenance_for_that_user_only(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await play(service, "alice", "s1", 10)
    await service.start_session("bob", "s1", restore=False, now=T0)
    await play(service, "bob", "s1", 10)
    result = await service.retrieve(RetrieveRequest(user_id="alice", query="hiking trips", top_k=3))
    assert result.count == len(result.facts) == len(result.items) == 3
    top = result.items[0]
    assert "hiking" in top.text and top.session_id == "s1" and top.kind in (MemoryKind.TURN, MemoryKind.CHUNK)
    assert top.timestamp is not None and top.turn_seqs
    bob_turns = {t.turn_id for t in await service.store.get_turns("bob", "s1")}
    assert bob_turns and all("bob" not in item.text for item in result.items)


async def test_forget_removes_the_user(service: MemoryService):
    await service.start_session("alice", "s1", restore=False, now=T0)
    await play(service, "alice", "s1", 5)
    deleted = await service.forget("alice")
    assert deleted.turns == 5 and deleted.sessions == 1
    assert (await service.export("alice")).turns == []
    with pytest.raises(SessionNotFoundError):
        await service.append_turn("alice", "s1", turn(6), T0)


async def test_the_store_files_are_readable_by_their_owner_only(tmp_path: Path):
    store = SqliteStore(tmp_path / "private" / "memory.sqlite3")
    await store.open(None, None)
    await store.create_session(rules.new_record("alice", "s1", T0))
    await store.append_turn("alice", "s1", turn(1), T0)
    files = sorted((tmp_path / "private").iterdir())
    assert {f.name for f in files} >= {"memory.sqlite3", "memory.sqlite3-wal", "memory.sqlite3-shm"}
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o600" for f in files}
    assert oct((tmp_path / "private").stat().st_mode & 0o777) == "0o700"
    await store.close()
    loose = tmp_path / "loose.sqlite3"
    loose.touch(mode=0o644)
    store = SqliteStore(loose)
    await store.open(None, None)
    assert oct(loose.stat().st_mode & 0o777) == "0o600"
    await store.close()


async def test_a_write_waits_for_another_process_write_transaction(tmp_path: Path):
    import sqlite3
    import threading

    path = tmp_path / "shared.sqlite3"
    store = SqliteStore(path)
    await store.open(None, None)
    await store.create_session(rules.new_record("alice", "s1", T0))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # as the other process would
    other.execute("BEGIN IMMEDIATE")
    committed = threading.Event()

    def commit() -> None:
        other.execute("COMMIT")
        committed.set()

    threading.Timer(0.2, commit).start()
    outcome = await store.append_turn("alice", "s1", turn(1), T0)
    assert committed.is_set() and outcome.turn.seq == 1  # it waited for the other write instead of failing
    other.close()
    await store.close()
