import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pydantic import ValidationError

from memory_core import session as rules
from memory_core.domain import SessionStatus, Turn
from memory_core.errors import ConflictError, SessionEndedError
from memory_core.session import (
    MAX_SUMMARY_BYTES,
    PREVIEW_CHARS,
    RECENT_REFS,
    Claim,
    CompactionDone,
    HotSession,
    SessionSnapshot,
    TurnInput,
)

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


def turn(turn_id: str, text: str = "hello", **extra) -> TurnInput:
    return TurnInput(turn_id=turn_id, user_message=text, agent_message="noted", **extra)


def stored(seq: int, text: str = "hello") -> Turn:
    return Turn(
        user_id="u1",
        session_id="s1",
        seq=seq,
        turn_id=f"t{seq}",
        user_message=text,
        agent_message="noted",
        timestamp=T0,
    )


# -- the record ---------------------------------------------------------------------------------------------------


def test_append_numbers_counts_and_timestamps_the_turn():
    record = rules.new_record("u1", "s1", T0)
    record, first = rules.append(record, turn("a"), T0 + timedelta(seconds=5))
    record, second = rules.append(record, turn("b", timestamp=T0 - timedelta(days=1)), T0 + timedelta(seconds=9))
    assert (first.seq, second.seq, record.turn_count) == (1, 2, 2)
    assert first.timestamp == T0 + timedelta(seconds=5)  # no timestamp: when it was stored
    assert second.timestamp == T0 - timedelta(days=1)  # the caller's
    assert record.last_activity == T0 + timedelta(seconds=9)


def test_append_revives_an_idle_session_and_refuses_an_ended_one():
    idle = rules.mark_idle(rules.new_record("u1", "s1", T0), T0)
    assert idle is not None and idle.status is SessionStatus.IDLE
    revived, _ = rules.append(idle, turn("a"), T0)
    assert revived.status is SessionStatus.ACTIVE
    ended = rules.end(revived, T0)
    with pytest.raises(SessionEndedError):
        rules.append(ended, turn("b"), T0)


def test_a_repeat_is_the_same_turn_only_with_the_same_content():
    first = stored(3).model_copy(update={"metadata": {"k": 1}})
    rules.ensure_same_turn(first, turn("t3"))  # no timestamp, no metadata: whatever was stored
    rules.ensure_same_turn(first, turn("t3", timestamp=T0, metadata={"k": 1}))
    rules.ensure_same_turn(first, turn("t3", timestamp=T0 + timedelta(seconds=1), metadata={"k": 2}))  # a retry's own
    for changed, field in [
        (turn("t3", "other"), "user_message"),
        (turn("t3").model_copy(update={"agent_message": "x"}), "agent_message"),
    ]:
        with pytest.raises(ConflictError) as raised:
            rules.ensure_same_turn(first, changed)
        assert raised.value.field == field and "t3" in raised.value.detail


def test_record_transitions_change_nothing_the_second_time():
    record = rules.new_record("u1", "s1", T0)
    for _ in range(12):
        record, _ = rules.append(record, turn(f"x{record.turn_count}"), T0)
    folded = rules.record_compaction(record, 0, 1, 10, "first ten")
    assert folded is not None and (folded.compacted_through, folded.chunk_count) == (10, 1)
    assert rules.record_compaction(folded, 0, 1, 10, "first ten") is None
    assert rules.record_compaction(folded, 2, 21, 30, "not next") is None
    indexed = rules.record_indexed(folded, 1, 40)
    assert indexed is not None and indexed.indexed_through == 12  # never beyond the turns there are
    assert rules.record_indexed(indexed, 1, 5) is None
    ended = rules.end(indexed, T0 + timedelta(minutes=1))
    assert ended is not None and rules.end(ended, T0 + timedelta(minutes=2)) is None
    reflected = rules.record_reflected(ended, T0)
    assert reflected is not None and rules.record_reflected(reflected, T0 + timedelta(days=1)) is None
    assert rules.revive(ended, T0) is None and rules.mark_idle(ended, T0 + timedelta(days=1)) is None


def test_batches_index_disjoint_windows_and_the_watermark_waits_for_gaps():
    k, l = 5, 10  # noqa: E741
    assert [s for s in range(1, 50) if rules.batch_due(s, k, l)] == [15, 25, 35, 45]
    assert [rules.batch_window(t, k, l) for t in (15, 25, 35)] == [(1, 15), (16, 25), (26, 35)]
    assert [rules.next_batch_end(s, k, l) for s in (1, 15, 16, 25, 26)] == [15, 15, 25, 25, 35]
    assert rules.batch_lag(k, l) == 15
    record = rules.new_record("u1", "s1", T0).model_copy(update={"turn_count": 40})
    # The batch of 26-35 finishes first: it waits beyond the gap; 1-15 moves the watermark; 16-25 closes the gap.
    record = rules.record_indexed(record, 26, 35)
    assert (record.indexed_through, record.indexed_ahead) == (0, ((26, 35),))
    record = rules.record_indexed(record, 1, 15)
    assert (record.indexed_through, record.indexed_ahead) == (15, ((26, 35),))
    record = rules.record_indexed(record, 16, 25)
    assert (record.indexed_through, record.indexed_ahead) == (35, ())
    assert rules.record_indexed(record, 16, 25) is None


def test_windows_remembered_beyond_a_gap_are_bounded():
    record = rules.new_record("u1", "s1", T0).model_copy(update={"turn_count": 10_000})
    for first in range(11, 10_000, 10):
        record = rules.record_indexed(record, first, first + 9) or record
    assert record.indexed_through == 0 and len(record.indexed_ahead) == rules.MAX_INDEXED_AHEAD
    record = rules.record_indexed(record, 1, 10)
    assert record.indexed_through == 10 + 10 * rules.MAX_INDEXED_AHEAD  # the rest is indexed again later


def test_an_active_session_is_evicted_only_when_idle_since_the_cutoff():
    record = rules.new_record("u1", "s1", T0)
    assert rules.mark_idle(record, T0 - timedelta(seconds=1)) is None
    idle = rules.mark_idle(record, T0)
    assert idle is not None and rules.mark_idle(idle, T0) is None
    assert rules.revive(idle, T0 + timedelta(minutes=1)).status is SessionStatus.ACTIVE


def test_summaries_are_bounded_in_bytes_at_a_word_boundary():
    assert rules.bounded_summary("short") == "short"
    long = " ".join(["ünïcödé"] * 1000)
    cut = rules.bounded_summary(long)
    assert rules.json_size(cut) <= MAX_SUMMARY_BYTES and cut.endswith("ünïcödé…")


# -- the hot state --------------------------------------------------------------------------------------------------


def snapshot(turn_count: int, compacted_through: int = 0, summary: str = "", **extra) -> SessionSnapshot:
    return SessionSnapshot(
        user_id="u1",
        session_id="s1",
        status=extra.pop("status", SessionStatus.ACTIVE),
        last_activity=extra.pop("last_activity", T0),
        turn_count=turn_count,
        indexed_through=extra.pop("indexed_through", turn_count),
        compacted_through=compacted_through,
        chunk_count=compacted_through // 10,
        cumulative_summary=summary,
        recent=tuple(rules.TurnRef.of(stored(s)) for s in range(max(1, turn_count - 4), turn_count + 1)),
    )


def test_sync_builds_the_state_and_claims_a_chunk_once_k_turns_follow_it():
    state, claim = rules.sync(None, snapshot(14), keep_recent=5, chunk_size=10)
    assert claim is None and state.turn_count == 14  # turns 1-10 are followed by only 4
    state, claim = rules.sync(state, snapshot(15), keep_recent=5, chunk_size=10)
    assert claim == Claim(user_id="u1", session_id="s1", index=0, first_seq=1, last_seq=10)
    state, again = rules.sync(state, snapshot(25), keep_recent=5, chunk_size=10)
    assert again is None  # one claim at a time: chunk 1 waits for chunk 0


def test_older_news_never_moves_the_state_back():
    state, _ = rules.sync(None, snapshot(30, compacted_through=20, summary="through 20"), 5, 10)
    state, _ = rules.apply_compaction(state, CompactionDone(chunk_count=3, through_seq=30, summary="30"), 5, 10)
    older, _ = rules.sync(state, snapshot(22, compacted_through=10, summary="through 10"), 5, 10)
    assert (older.turn_count, older.compacted_through, older.cumulative_summary) == (30, 30, "30")
    assert older.recent == state.recent


def test_a_compaction_outcome_applied_twice_changes_nothing():
    state, _claim = rules.sync(None, snapshot(15), 5, 10)
    done = CompactionDone(chunk_count=1, through_seq=10, summary="first ten")
    once, following = rules.apply_compaction(state, done, 5, 10)
    twice, again = rules.apply_compaction(once, done, 5, 10)
    assert following is None and again is None and once == twice
    assert (once.compacted_through, once.claimed_through, once.cumulative_summary) == (10, 10, "first ten")


def test_a_released_claim_is_claimed_again():
    state, claim = rules.sync(None, snapshot(15), 5, 10)
    state = rules.release_claim(state)
    _, again = rules.sync(state, snapshot(15), 5, 10)
    assert again == claim


def test_an_ended_session_keeps_no_text_and_claims_nothing():
    state, _ = rules.sync(None, snapshot(40, compacted_through=10, summary="private words"), 5, 10)
    final = rules.finish(state, "u1", "s1", T0)
    assert final.status == "ended" and final.cumulative_summary == "" and final.recent == ()
    assert final.turn_count == 40
    assert rules.sync(final, snapshot(50), 5, 10) == (final, None)
    assert rules.finish(None, "u1", "s1", T0).status == "ended"


def test_state_and_payloads_stay_small_whatever_the_turns():
    # Four-byte characters everywhere, the longest summary and as many references as the state keeps.
    huge = "😀" * 32_000
    turns = [stored(s, huge) for s in range(1, 101)]
    record = rules.new_record("u1", "s1", T0).model_copy(
        update={"turn_count": 100, "compacted_through": 90, "cumulative_summary": "😀 " * 5000}
    )
    snap = SessionSnapshot.of(record, turns)
    assert len(snap.recent) == RECENT_REFS and all(len(r.preview) <= PREVIEW_CHARS for r in snap.recent)
    assert len(json.dumps(snap.model_dump(mode="json")).encode()) < 8 * 1024
    state, _claim = rules.sync(None, snap, keep_recent=100, chunk_size=10)
    assert len(json.dumps(state.model_dump(mode="json")).encode()) < 8 * 1024
    done = CompactionDone(chunk_count=10, through_seq=100, summary=rules.bounded_summary("😀 " * 5000))
    assert len(done.model_dump_json().encode()) < 8 * 1024


class BatchesOverlap(RuleBasedStateMachine):
    """Turns arrive; batch orchestrations start, interleave, fail and retry; the store and the entity stay in step.

    The store's record is the truth (appends and conditional compaction writes); the entity hands out claims. Whatever
    the interleaving, chunks fold in order, none twice, and every due chunk is eventually compacted.
    """

    @initialize(k=st.integers(1, 6), l=st.integers(1, 6))
    def configure(self, k: int, l: int) -> None:  # noqa: E741
        self.k, self.l = k, l
        self.record = rules.new_record("u1", "s1", T0)
        self.state: HotSession | None = None
        self.claims: list[Claim] = []  # in flight, one per running orchestration
        self.folded: list[tuple[int, int]] = []

    @rule(count=st.integers(1, 8))
    def store_turns(self, count: int) -> None:
        for _ in range(count):
            self.record, _ = rules.append(self.record, turn(f"t{self.record.turn_count}"), T0)

    def hand_out(self, claim: Claim | None) -> None:
        if claim is not None:
            assert 1 <= claim.chunks <= rules.MAX_CHUNKS_PER_CLAIM
            assert claim.last_seq + self.k <= self.record.turn_count  # every claimed chunk is due
            self.claims.append(claim)

    def fold(self, parts: list[tuple[int, int, int]]) -> None:
        """What the compact activity does: fold each part that is next in the store's record, in order."""
        for index, first, last in parts:
            folded = rules.record_compaction(self.record, index, first, last, f"{first}-{last}")
            if folded is not None:
                self.record = folded
                self.folded.append((first, last))

    @rule()
    def a_batch_syncs(self) -> None:
        recent = [stored(s) for s in range(max(1, self.record.turn_count - 4), self.record.turn_count + 1)]
        self.state, claim = rules.sync(self.state, SessionSnapshot.of(self.record, recent), self.k, self.l)
        self.hand_out(claim)

    @rule(data=st.data())
    @precondition(lambda self: self.claims)
    def a_claim_is_compacted(self, data: st.DataObject) -> None:
        claim = self.claims.pop(data.draw(st.integers(0, len(self.claims) - 1)))
        self.fold(claim.parts())
        done = CompactionDone(
            chunk_count=self.record.chunk_count,
            through_seq=self.record.compacted_through,
            summary=self.record.cumulative_summary,
        )
        assert self.state is not None
        self.state, following = rules.apply_compaction(self.state, done, self.k, self.l)
        self.hand_out(following)

    @rule(data=st.data())
    @precondition(lambda self: self.claims)
    def a_compaction_fails_for_good(self, data: st.DataObject) -> None:
        """The activity folds some of the claim's chunks (each is its own write), then fails for good."""
        claim = self.claims.pop(data.draw(st.integers(0, len(self.claims) - 1)))
        self.fold(claim.parts()[: data.draw(st.integers(0, claim.chunks - 1))])
        assert self.state is not None
        self.state = rules.release_claim(self.state)

    @invariant()
    def chunks_fold_in_order_each_once(self) -> None:
        expected = [(i * self.l + 1, (i + 1) * self.l) for i in range(len(self.folded))]
        assert self.folded == expected
        assert self.record.compacted_through == (self.folded[-1][1] if self.folded else 0)

    @invariant()
    def the_entity_never_runs_ahead_of_the_store(self) -> None:
        if self.state is not None:
            assert self.state.compacted_through <= self.record.compacted_through
            assert self.state.turn_count <= self.record.turn_count
            assert len(json.dumps(self.state.model_dump(mode="json"))) < 8 * 1024

    @invariant()
    def no_chunk_is_in_two_live_claims(self) -> None:
        live = sorted((c for c in self.claims if c.last_seq > self.record.compacted_through), key=lambda c: c.first_seq)
        assert all(a.last_seq < b.first_seq for a, b in itertools.pairwise(live))

    def teardown(self) -> None:
        # Quiescence: with nothing in flight, batches keep syncing until every due chunk is folded.
        if not hasattr(self, "record"):
            return
        self.claims.clear()
        if self.state is not None:
            self.state = rules.release_claim(self.state)
        for _ in range(self.record.turn_count + 2):
            self.a_batch_syncs()
            while self.claims:
                self.a_claim_is_compacted_first()
        assert self.record.compacted_through + self.l + self.k > self.record.turn_count

    def a_claim_is_compacted_first(self) -> None:
        claim = self.claims.pop(0)
        self.fold(claim.parts())
        done = CompactionDone(
            chunk_count=self.record.chunk_count, through_seq=self.record.compacted_through, summary="x"
        )
        assert self.state is not None
        self.state, following = rules.apply_compaction(self.state, done, self.k, self.l)
        self.hand_out(following)


TestBatchesOverlap = BatchesOverlap.TestCase
TestBatchesOverlap.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


def test_a_claim_splits_into_its_chunks_in_order_and_refuses_uneven_seqs():
    claim = Claim(user_id="u1", session_id="s1", index=2, first_seq=21, last_seq=50, chunks=3)
    assert claim.parts() == [(2, 21, 30), (3, 31, 40), (4, 41, 50)]
    with pytest.raises(ValidationError):
        Claim(user_id="u1", session_id="s1", index=2, first_seq=21, last_seq=45, chunks=3)
    with pytest.raises(ValidationError):
        Claim(user_id="u1", session_id="s1", index=0, first_seq=1, last_seq=90, chunks=rules.MAX_CHUNKS_PER_CLAIM + 1)
