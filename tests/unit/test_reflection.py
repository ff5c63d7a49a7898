from datetime import UTC, datetime, timedelta

from memory_core.domain import Insight
from memory_core.ports import InsightCandidate
from memory_core.reflection import consolidate, insight_id

T0 = datetime(2026, 2, 1, tzinfo=UTC)
TIMES = {seq: T0 + timedelta(minutes=seq) for seq in range(1, 30)}


def candidate(key: str, text: str, *turns: int) -> InsightCandidate:
    return InsightCandidate(key=key, category="test", text=text, source_turns=list(turns))


def run(existing, candidates, session="s2", now=T0 + timedelta(days=1)):
    return consolidate(existing, candidates, user_id="u", session_id=session, turn_times=TIMES, now=now)


def existing(key: str, text: str, session: str = "s1") -> Insight:
    return Insight(
        id=insight_id("u", key, text, session),
        user_id="u",
        key=key,
        category="test",
        text=text,
        source_session_id=session,
        source_turns=(1,),
        valid_from=T0,
        created_at=T0,
        updated_at=T0,
    )


def test_new_key_is_added_with_provenance_and_validity_from_when_it_was_said():
    plan = run([], [candidate("location", "The user lives in Lisbon.", 3, 99)])
    (added,) = plan.added
    assert added.source_session_id == "s2" and added.source_turns == (3,)  # 99 is not a turn of the session
    assert added.valid_from == TIMES[3] and added.valid_to is None and added.status == "active"
    assert plan.writes == [added]


def test_same_statement_again_is_a_duplicate_and_writes_nothing():
    old = existing("location", "The user lives in Lisbon.")
    plan = run([old], [candidate("location", "the user lives in lisbon", 4)])
    assert plan.writes == [] and plan.duplicates == 1


def test_contradiction_supersedes_and_keeps_the_old_insight():
    old = existing("location", "The user lives in Porto.")
    plan = run([old], [candidate("location", "The user lives in Lisbon.", 5)])
    (retired,) = plan.superseded
    (added,) = plan.added
    assert retired.id == old.id and retired.status == "superseded"
    assert retired.valid_to == TIMES[5] == added.valid_from
    assert retired.superseded_by == added.id


def test_refinement_updates_in_place():
    old = existing("preference:hiking", "The user likes hiking.")
    plan = run([old], [candidate("preference:hiking", "The user likes hiking in the Alps.", 6)])
    (updated,) = plan.updated
    assert updated.id == old.id and updated.text.endswith("Alps.") and updated.source_session_id == "s2"
    assert not plan.added and not plan.superseded


def test_running_reflection_twice_writes_nothing_new():
    candidates = [
        candidate("location", "The user lives in Porto.", 1),
        candidate("location", "The user moved to Lisbon.", 8),
        candidate("employer", "The user works at Contoso.", 2),
        candidate("preference:tea", "The user likes tea.", 3),
    ]
    before = [existing("preference:tea", "The user likes tea.", "s0")]
    first = run(before, candidates)
    stored = {i.id: i for i in before}
    stored.update({i.id: i for i in first.writes})
    second = run(list(stored.values()), candidates)
    assert second.writes == []
    assert second.duplicates == len(candidates)
    assert {i.status for i in stored.values() if i.key == "location"} == {"active", "superseded"}


def test_later_candidate_in_one_session_wins():
    plan = run(
        [], [candidate("location", "The user lives in Porto.", 1), candidate("location", "The user lives in Rome.", 9)]
    )
    by_text = {i.text: i for i in plan.writes}
    assert by_text["The user lives in Porto."].status == "superseded"
    assert by_text["The user lives in Rome."].status == "active"
