from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from memory_core.domain import SessionRecord, SessionStatus
from memory_core.errors import SessionEndedError, SessionNotFoundError
from memory_core.session import (
    MAX_TRACKED_TURN_IDS,
    TurnInput,
    append_turn,
    apply_compaction,
    end_session,
    new_session,
    release_claim,
    restore_session,
    uncompacted_turns,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def turn(turn_id: str, text: str = "hello") -> TurnInput:
    return TurnInput(turn_id=turn_id, user_message=text, agent_message="reply", timestamp=T0)


def test_append_assigns_contiguous_sequence_numbers_and_keeps_last_k():
    state = new_session("u1", "s1", T0)
    for i in range(7):
        state, result = append_turn(state, turn(f"t{i}"), keep_recent=3, chunk_size=10, now=T0)
        assert result.seq == i + 1
    assert [t.seq for t in state.recent] == [5, 6, 7]
    assert [t.seq for t in state.pending] == [1, 2, 3, 4]
    assert state.turn_count == 7


def test_repeated_turn_id_is_dropped_and_returns_first_sequence_number():
    state = new_session("u1", "s1", T0)
    state, first = append_turn(state, turn("same", "first"), keep_recent=5, chunk_size=10, now=T0)
    state2, again = append_turn(state, turn("same", "retry"), keep_recent=5, chunk_size=10, now=T0)
    assert again.duplicate and again.seq == first.seq == 1
    assert state2 == state
    assert again.turn is not None and again.turn.user_message == "first"


def test_chunk_is_claimed_when_l_turns_are_pending_and_only_one_at_a_time():
    state = new_session("u1", "s1", T0)
    claims = []
    for i in range(2 + 3 + 3):  # K=2 recent, then chunks of 3
        state, result = append_turn(state, turn(f"t{i}"), keep_recent=2, chunk_size=3, now=T0)
        if result.compaction:
            claims.append(result.compaction)
    # 6 turns went pending, but the second chunk waits until the first is applied
    assert len(claims) == 1
    assert [t.seq for t in claims[0].turns] == [1, 2, 3]
    state, nxt = apply_compaction(state, claims[0].index, claims[0].through_seq, "summary 1", chunk_size=3)
    assert state.cumulative_summary == "summary 1" and state.compacted_through == 3
    assert nxt is not None and [t.seq for t in nxt.turns] == [4, 5, 6]
    assert nxt.previous_summary == "summary 1"


def test_applying_the_same_compaction_twice_changes_nothing():
    state = new_session("u1", "s1", T0)
    compaction = None
    for i in range(4):
        state, result = append_turn(state, turn(f"t{i}"), keep_recent=1, chunk_size=3, now=T0)
        compaction = compaction or result.compaction
    assert compaction is not None
    once, _ = apply_compaction(state, compaction.index, compaction.through_seq, "s", chunk_size=3)
    twice, again = apply_compaction(once, compaction.index, compaction.through_seq, "s", chunk_size=3)
    assert twice == once and again is None


def test_released_claim_is_claimed_again_by_the_next_append():
    state = new_session("u1", "s1", T0)
    for i in range(4):
        state, _ = append_turn(state, turn(f"t{i}"), keep_recent=1, chunk_size=3, now=T0)
    state = release_claim(state)
    state, result = append_turn(state, turn("t4"), keep_recent=1, chunk_size=3, now=T0)
    assert result.compaction is not None and [t.seq for t in result.compaction.turns] == [1, 2, 3]


def test_ended_session_refuses_turns():
    state = end_session(new_session("u1", "s1", T0), T0)
    with pytest.raises(SessionEndedError):
        append_turn(state, turn("t"), keep_recent=5, chunk_size=10, now=T0)
    assert end_session(state, T0 + timedelta(1)) == state


def test_restore_rebuilds_recent_and_pending_from_uncompacted_turns():
    state = new_session("u1", "s1", T0)
    turns = []
    for i in range(8):
        state, result = append_turn(state, turn(f"t{i}"), keep_recent=2, chunk_size=100, now=T0)
        assert result.turn is not None
        turns.append(result.turn)
    record = SessionRecord(
        user_id="u1",
        session_id="s1",
        status=SessionStatus.IDLE,
        started_at=T0,
        last_activity=T0,
        turn_count=8,
        compacted_through=3,
        cumulative_summary="earlier",
        chunk_count=1,
    )
    restored = restore_session(record, turns, keep_recent=2, now=T0)
    assert restored.restored
    assert [t.seq for t in restored.recent] == [7, 8]
    assert [t.seq for t in restored.pending] == [4, 5, 6]
    assert restored.cumulative_summary == "earlier" and restored.turn_count == 8
    # a retry of a restored turn is still recognised
    _, again = append_turn(restored, turn("t7"), keep_recent=2, chunk_size=100, now=T0)
    assert again.duplicate and again.seq == 8
    # and so is a retry of a turn that was compacted before the eviction
    _, again = append_turn(restored, turn("t1"), keep_recent=2, chunk_size=100, now=T0)
    assert again.duplicate and again.seq == 2


def test_ended_session_is_not_restored():
    record = SessionRecord(user_id="u1", session_id="s1", status=SessionStatus.ENDED, started_at=T0, last_activity=T0)
    with pytest.raises(SessionNotFoundError):
        restore_session(record, [], keep_recent=5, now=T0)


def test_tracked_turn_ids_stay_bounded():
    state = new_session("u1", "s1", T0)
    for i in range(MAX_TRACKED_TURN_IDS + 20):
        state, _ = append_turn(state, turn(f"t{i}"), keep_recent=2, chunk_size=10**6, now=T0)
    assert len(state.turn_ids) == MAX_TRACKED_TURN_IDS
    assert f"t{MAX_TRACKED_TURN_IDS + 19}" in state.turn_ids


@settings(max_examples=150, stateful_step_count=60, deadline=None)
class SessionRules(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.k = 3
        self.l = 4
        self.state = new_session("u", "s", T0)
        self.accepted: dict[str, int] = {}
        self.claimed = None
        self.ended = False

    @rule(k=st.integers(1, 6), l=st.integers(1, 6))
    @precondition(lambda self: self.state.turn_count == 0)
    def configure(self, k: int, l: int) -> None:  # noqa: E741
        self.k, self.l = k, l

    @rule(turn_id=st.sampled_from([f"t{i}" for i in range(40)]))
    def append(self, turn_id: str) -> None:
        if self.ended:
            with pytest.raises(SessionEndedError):
                append_turn(self.state, turn(turn_id), self.k, self.l, T0)
            return
        self.state, result = append_turn(self.state, turn(turn_id), self.k, self.l, T0)
        if turn_id in self.accepted:
            assert result.duplicate and result.seq == self.accepted[turn_id]
        else:
            assert not result.duplicate
            self.accepted[turn_id] = result.seq
        if result.compaction is not None:
            assert self.claimed is None
            self.claimed = result.compaction

    @rule()
    @precondition(lambda self: self.claimed is not None)
    def compact(self) -> None:
        c = self.claimed
        assert c.previous_summary == self.state.cumulative_summary
        self.state, self.claimed = apply_compaction(
            self.state, c.index, c.through_seq, f"{c.previous_summary}|{c.turns[0].seq}-{c.through_seq}", self.l
        )

    @rule()
    @precondition(lambda self: self.claimed is not None)
    def compaction_fails(self) -> None:
        self.state = release_claim(self.state)
        self.claimed = None

    @rule()
    def end(self) -> None:
        self.state = end_session(self.state, T0)
        self.ended = True

    @invariant()
    def sequence_numbers_are_contiguous_without_duplicates(self) -> None:
        assert sorted(self.accepted.values()) == list(range(1, len(self.accepted) + 1))
        hot = [t.seq for t in uncompacted_turns(self.state)]
        assert hot == sorted(set(hot))

    @invariant()
    def at_most_k_recent(self) -> None:
        assert len(self.state.recent) <= self.k

    @invariant()
    def every_turn_is_in_exactly_one_place(self) -> None:
        recent = {t.seq for t in self.state.recent}
        pending = {t.seq for t in self.state.pending}
        for seq in self.accepted.values():
            places = (seq in recent) + (seq in pending) + (seq <= self.state.compacted_through)
            assert places == 1, seq

    @invariant()
    def summary_folds_chunks_in_order(self) -> None:
        parts = [p for p in self.state.cumulative_summary.split("|") if p]
        ends = [int(p.split("-")[1]) for p in parts]
        assert ends == sorted(ends)
        assert (ends[-1] if ends else 0) == self.state.compacted_through


TestSessionRules = SessionRules.TestCase


def test_turn_accepted_before_the_end_is_still_appended():
    state, _ = append_turn(new_session("u1", "s1", T0), turn("t0"), keep_recent=5, chunk_size=10, now=T0)
    ended = end_session(state, T0 + timedelta(seconds=10))
    in_flight = turn("t1").model_copy(update={"received_at": T0 + timedelta(seconds=9)})
    late = turn("t2").model_copy(update={"received_at": T0 + timedelta(seconds=11)})
    ended, result = append_turn(ended, in_flight, keep_recent=5, chunk_size=10, now=T0)
    assert result.seq == 2 and ended.status == "ended"
    with pytest.raises(SessionEndedError):
        append_turn(ended, late, keep_recent=5, chunk_size=10, now=T0)
