"""Forgetting a user in the use cases: the receipt, the pending forget and its follow-up, and background work that
read the user's data before the forget writing none of it back afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memory_core import session as rules
from memory_core import use_cases
from memory_core.adapters.sqlite import SqliteStore
from memory_core.config import Settings
from memory_core.errors import SessionNotFoundError, UserForgettingError
from memory_core.models import StartSessionRequest, StoreTurnRequest
from memory_core.ports import ForgetProgress, InsightCandidate
from memory_core.service import MemoryService
from memory_core.session import Claim, TurnInput
from tests.support.fakes import FakeChatModel, HashingEmbedder

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
K, L = 2, 2


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[MemoryService]:
    settings = Settings(K_TURN_BUFFER=K, L_TURN_CHUNKS=L, REFLECTION_THRESHOLD_TURNS=2)
    embedder = HashingEmbedder()
    store = SqliteStore(tmp_path / "m.sqlite3")
    await store.open(embedder.model, embedder.dimensions)
    chat = FakeChatModel(
        {1: [InsightCandidate(key="home", category="place", text="The user lives in Porto.", source_turns=[1])]}
    )
    svc = MemoryService(settings, store, chat, embedder)
    yield svc
    await svc.close()


class FakeHost:
    """A SessionHost whose forget reports what it is told to: pending for ``pending_passes`` calls, then done."""

    def __init__(self, pending_passes: int = 0) -> None:
        self.pending_passes = pending_passes
        self.calls: list[tuple[str, list[str], float]] = []

    async def forget(self, user_id: str, session_ids: Sequence[str], *, wait_seconds: float = 0.0) -> ForgetProgress:
        self.calls.append((user_id, list(session_ids), wait_seconds))
        if self.pending_passes:
            self.pending_passes -= 1
            return ForgetProgress(instances_purged=1, instances_pending=1, entities_pending=2)
        return ForgetProgress(instances_purged=3, entities_deleted=2)


async def stored_session(service: MemoryService, user: str, session: str, turns: int) -> None:
    await service.start_session(user, session, restore=False, now=T0)
    for n in range(1, turns + 1):
        text = TurnInput(turn_id=f"t{n}", user_message=f"I live in Porto, says {user} ({n})", agent_message="Noted.")
        await service.append_turn(user, session, text, T0)


async def test_forget_answers_a_receipt_and_lets_the_user_come_back(service: MemoryService):
    await stored_session(service, "alice", "s1", 3)
    await stored_session(service, "alice", "s2", 1)
    host = FakeHost()
    receipt = await use_cases.forget_user(service, host, "alice", wait_seconds=7)  # type: ignore[arg-type]
    assert (receipt.sessions, receipt.turns, receipt.histories_purged, receipt.entities_deleted) == (2, 4, 3, 2)
    assert receipt.complete and (receipt.pending.instances, receipt.pending.entities) == (0, 0)
    assert receipt.began_at is not None
    ((user_id, session_ids, wait),) = host.calls
    assert (user_id, sorted(session_ids), wait) == ("alice", ["s1", "s2"], 7)
    assert await service.store.pending_forgets() == []
    # Complete: the user may come back.
    await use_cases.start_session(service, StartSessionRequest(user_id="alice", session_id="s1"))


async def test_a_pending_forget_refuses_the_user_until_the_cleanup_timer_completes_it(service: MemoryService):
    await stored_session(service, "alice", "s1", 3)
    host = FakeHost(pending_passes=2)
    receipt = await use_cases.forget_user(service, host, "alice", wait_seconds=0)  # type: ignore[arg-type]
    assert not receipt.complete
    assert (receipt.pending.instances, receipt.pending.entities) == (1, 2)
    assert [p.user_id for p in await service.store.pending_forgets()] == ["alice"]
    with pytest.raises(UserForgettingError):
        await use_cases.start_session(service, StartSessionRequest(user_id="alice"))
    request = StoreTurnRequest(user_id="alice", session_id="s1", user_message="more", agent_message="ok")
    with pytest.raises(UserForgettingError):
        await use_cases.store_turn(service, host, request)  # type: ignore[arg-type]

    assert await use_cases.continue_forgets(service, host) == 0
    assert len(host.calls) == 1  # too young: its DELETE may still be at it
    later = datetime.now(UTC) + use_cases.FOLLOW_UP_AFTER
    assert await use_cases.continue_forgets(service, host, later) == 0  # still pending after one more pass
    assert await use_cases.continue_forgets(service, host, later) == 1
    assert await service.store.pending_forgets() == []
    assert host.calls[1:] == [("alice", [], 0.0), ("alice", [], 0.0)]
    await use_cases.start_session(service, StartSessionRequest(user_id="alice"))


async def test_background_work_that_read_the_user_before_the_forget_writes_nothing_after_it(service: MemoryService):
    await stored_session(service, "alice", "s1", 4)
    record = await service.store.get_session("alice", "s1")
    assert record is not None
    claim = Claim(user_id="alice", session_id="s1", index=0, first_seq=1, last_seq=2)
    store = service.store
    # The work reads the session as it was, then the forget deletes it before the work writes.
    real_get_session = store.get_session

    async def forget_after_reading(user_id: str, session_id: str):  # type: ignore[no-untyped-def]
        found = await real_get_session(user_id, session_id)
        await store.delete_user("alice")
        return found

    store.get_session = forget_after_reading  # type: ignore[method-assign]
    try:
        with pytest.raises(SessionNotFoundError):
            await service.compact(claim, T0)
        await stored_session(service, "alice", "s1", 4)
        assert await service.index_turns("alice", "s1", None) is None
        await stored_session(service, "alice", "s1", 4)
        await service.end_session("alice", "s1", T0)
        outcome = await service.reflect("alice", "s1", T0)
    finally:
        store.get_session = real_get_session  # type: ignore[method-assign]
    assert outcome.summary is None and outcome.insights_added == []
    export = await service.export("alice")
    assert (export.sessions, export.turns, export.chunks, export.summaries, export.insights) == ([], [], [], [], [])


async def test_work_of_a_forgotten_session_writes_nothing_into_a_new_session_with_its_id(service: MemoryService):
    await stored_session(service, "alice", "s1", 2)
    await service.end_session("alice", "s1", T0)
    old = await service.store.get_session("alice", "s1")
    assert old is not None
    await service.store.delete_user("alice")
    # The user came back at once and reused the session id; the old session's reflection arrives late.
    await service.store.create_session(rules.new_record("alice", "s1", T0 + timedelta(hours=1)))
    for n in (1, 2):
        new_turn = TurnInput(turn_id=f"n{n}", user_message=f"I live in Porto now ({n})", agent_message="Noted.")
        await service.append_turn("alice", "s1", new_turn, T0 + timedelta(hours=1))
    store = service.store
    real_get_session = store.get_session

    async def the_old_record(user_id: str, session_id: str):  # type: ignore[no-untyped-def]
        return old

    store.get_session = the_old_record  # type: ignore[method-assign]
    try:
        outcome = await service.reflect("alice", "s1", T0)
    finally:
        store.get_session = real_get_session  # type: ignore[method-assign]
    assert outcome.summary is None and outcome.insights_added == []
    export = await service.export("alice")
    assert (export.summaries, export.insights) == ([], [])
    assert [t.turn_id for t in export.turns] == ["n1", "n2"]
    current = await service.store.get_session("alice", "s1")
    assert current is not None and current.reflected_at is None and current.status.value == "active"
