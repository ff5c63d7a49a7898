from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memory_core.adapters.sqlite import SqliteStore
from memory_core.config import Settings
from memory_core.domain import MemoryKind, SessionStatus
from memory_core.errors import ConflictError, SessionNotFoundError
from memory_core.models import InsightsRequest, RetrieveRequest, SummariesRequest
from memory_core.ports import InsightCandidate
from memory_core.service import MemoryService
from memory_core.session import TurnInput, append_turn, apply_compaction, end_session
from tests.support.fakes import FakeChatModel, HashingEmbedder

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
TOPICS = ["retirement savings", "a 401k plan", "index funds", "the dog", "hiking trips"]


@pytest.fixture
async def service(tmp_path: Path):
    settings = Settings(K_TURN_BUFFER=3, L_TURN_CHUNKS=4, REFLECTION_THRESHOLD_TURNS=6, M_SESSIONS_RECENT=3)
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


async def play(svc: MemoryService, state, count: int, start: int = 1):
    """Drive the session as the entity and the ingest orchestration would."""
    for i in range(start, start + count):
        turn = TurnInput(
            turn_id=f"t{i}",
            user_message=f"Tell me about {TOPICS[i % len(TOPICS)]} (turn {i})",
            agent_message="Here is what I know.",
            timestamp=T0 + timedelta(minutes=i),
        )
        state, result = append_turn(state, turn, svc.settings.K_TURN_BUFFER, svc.settings.L_TURN_CHUNKS, T0)
        await svc.persist_turn(result.turn)
        compaction = result.compaction
        while compaction is not None:
            summary = await svc.compact(compaction, T0)
            state, compaction = apply_compaction(
                state, compaction.index, compaction.through_seq, summary, svc.settings.L_TURN_CHUNKS
            )
    return state


async def test_new_session_gets_an_id_and_is_recorded(service: MemoryService):
    state = await service.open_session("alice", None, restore=True, now=T0)
    assert len(state.session_id) == 32 and not state.restored
    record = await service.store.get_session("alice", state.session_id)
    assert record is not None and record.status is SessionStatus.ACTIVE


async def test_restore_of_unknown_or_ended_session_is_not_found(service: MemoryService):
    with pytest.raises(SessionNotFoundError):
        await service.open_session("alice", "missing", restore=True, now=T0)
    state = await service.open_session("alice", "s1", restore=False, now=T0)
    await service.save_session("alice", "s1", end_session(state, T0), SessionStatus.ENDED)
    with pytest.raises(SessionNotFoundError):
        await service.open_session("alice", "s1", restore=True, now=T0)


async def test_creating_a_session_under_a_taken_id_is_a_conflict(service: MemoryService):
    await service.open_session("alice", "s1", restore=False, now=T0)
    with pytest.raises(ConflictError):
        await service.open_session("alice", "s1", restore=False, now=T0)


async def test_evicted_session_restores_cold_with_summary_and_recent_turns(service: MemoryService):
    state = await service.open_session("alice", "s1", restore=False, now=T0)
    state = await play(service, state, 9)
    await service.save_session("alice", "s1", state, SessionStatus.IDLE)
    restored = await service.open_session("alice", "s1", restore=True, now=T0 + timedelta(hours=1))
    assert restored.restored
    assert [t.seq for t in restored.recent] == [7, 8, 9]
    assert [t.seq for t in restored.pending] == [5, 6]
    assert restored.cumulative_summary == state.cumulative_summary == "turns 1-4"
    assert restored.turn_count == 9
    context = await service.context(restored)
    assert context.restored and context.turn_count == 9
    assert [m.role for m in context.active_context] == ["user", "assistant"] * 3
    assert "turn 9" in context.formatted_context and "turns 1-4" in context.formatted_context


async def test_reflection_writes_summary_and_insights_once(service: MemoryService):
    state = await service.open_session("alice", "s1", restore=False, now=T0)
    state = await play(service, state, 9)
    outcome = await service.reflect("alice", "s1", T0 + timedelta(hours=1))
    assert outcome.summary_id and outcome.turn_count == 9
    assert len(outcome.insights_added) == 2  # Porto, then Lisbon superseding it within the session
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
    state = await service.open_session("alice", "s1", restore=False, now=T0)
    await play(service, state, 3)
    outcome = await service.reflect("alice", "s1", T0)
    assert outcome.summary and "60 words" in outcome.summary
    assert outcome.insights_added == []
    assert ("extract_insights", (1, 2, 3)) not in service.chat.calls  # type: ignore[attr-defined]


async def test_context_shows_other_sessions_summaries_and_insights(service: MemoryService):
    first = await service.open_session("alice", "s1", restore=False, now=T0)
    await play(service, first, 8)
    await service.reflect("alice", "s1", T0)
    second = await service.open_session("alice", "s2", restore=False, now=T0 + timedelta(days=1))
    context = await service.context(second)
    assert context.insights == ["The user lives in Lisbon."]
    assert len(context.session_summaries) == 1
    assert "Lisbon" in context.formatted_context


async def test_retrieve_returns_facts_with_provenance_for_that_user_only(service: MemoryService):
    state = await service.open_session("alice", "s1", restore=False, now=T0)
    await play(service, state, 10)
    other = await service.open_session("bob", "s1", restore=False, now=T0)
    await play(service, other, 10)
    result = await service.retrieve(RetrieveRequest(user_id="alice", query="hiking trips", top_k=3))
    assert result.count == len(result.facts) == len(result.items) == 3
    top = result.items[0]
    assert "hiking" in top.text and top.session_id == "s1" and top.kind in (MemoryKind.TURN, MemoryKind.CHUNK)
    assert top.timestamp is not None and top.turn_seqs
    bob_turns = {t.turn_id for t in await service.store.get_turns("bob", "s1")}
    assert bob_turns and all("bob" not in item.text for item in result.items)


async def test_forget_removes_the_user(service: MemoryService):
    state = await service.open_session("alice", "s1", restore=False, now=T0)
    await play(service, state, 5)
    deleted = await service.forget("alice")
    assert deleted.turns == 5 and deleted.sessions == 1
    assert (await service.export("alice")).turns == []


async def test_saving_a_session_writes_hot_turns_the_store_lacks(service: MemoryService):
    state = await service.open_session("alice", "s1", restore=False, now=T0)
    state, _ = append_turn(
        state,
        TurnInput(turn_id="lost", user_message="never persisted", agent_message="ok", timestamp=T0),
        service.settings.K_TURN_BUFFER,
        service.settings.L_TURN_CHUNKS,
        T0,
    )
    assert await service.store.get_turns("alice", "s1") == []
    await service.save_session("alice", "s1", state, SessionStatus.IDLE)
    assert [t.turn_id for t in await service.store.get_turns("alice", "s1")] == ["lost"]
    record = await service.store.get_session("alice", "s1")
    assert record is not None and record.status is SessionStatus.IDLE and record.turn_count == 1


async def test_ending_a_session_that_is_not_hot_marks_its_record(service: MemoryService):
    await service.open_session("alice", "s1", restore=False, now=T0)
    await service.save_session("alice", "s1", None, SessionStatus.ENDED)
    record = await service.store.get_session("alice", "s1")
    assert record is not None and record.status is SessionStatus.ENDED and record.ended_at is not None
    with pytest.raises(SessionNotFoundError):
        await service.save_session("alice", "missing", None, SessionStatus.ENDED)
