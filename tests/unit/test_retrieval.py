import asyncio

import pytest

from memory_core.context import default_counter
from memory_core.domain import MemoryKind, SearchHit
from memory_core.errors import UpstreamUnavailableError
from memory_core.retrieval import (
    NEIGHBOUR_WEIGHT,
    SESSION_WEIGHT,
    TEXT_WEIGHT,
    candidates,
    fit_budget,
    fuse,
    rank,
    with_context,
)


def hit(
    item_id: str, score: float = 0.0, kind: MemoryKind = MemoryKind.TURN, session: str | None = None, seq: int = 0
) -> SearchHit:
    seqs = (seq,) if seq else ()
    return SearchHit(kind=kind, id=item_id, text=item_id, score=score, session_id=session, seqs=seqs)


def test_fusion_adds_each_lists_scaled_scores_by_weight():
    text = [hit("a", 12.0), hit("b", 7.0), hit("c", 2.0)]  # BM25: scaled to 1, 0.5, 0
    vector = [hit("c", 0.9), hit("d", 0.8), hit("a", 0.5)]  # cosine: scaled to 1, 0.75, 0
    fused = fuse([text, vector], limit=4)
    vector_weight = 1 - TEXT_WEIGHT
    expected = {"a": TEXT_WEIGHT, "b": TEXT_WEIGHT * 0.5, "c": vector_weight, "d": vector_weight * 0.75}
    assert [h.id for h in fused] == sorted(expected, key=lambda i: -expected[i])
    assert {h.id: h.score for h in fused} == {i: round(v, 6) for i, v in expected.items()}


def test_fusion_keeps_how_far_apart_hits_score_not_only_their_order():
    # Reciprocal rank fusion (k=5) would put "close" (2nd in text, 1st in vectors) before "strong" (1st and 3rd); a
    # text hit far ahead of the rest keeps its place when the vectors barely tell the three apart.
    text = [hit("strong", 20.0), hit("close", 3.0), hit("weak", 2.0)]
    vector = [hit("close", 0.61), hit("weak", 0.60), hit("strong", 0.59)]
    assert [h.id for h in fuse([text, vector], limit=3)] == ["strong", "close", "weak"]


def test_fusion_respects_the_limit_and_handles_empty_and_flat_lists():
    assert fuse([[], []], limit=3) == []
    assert [h.id for h in fuse([[hit("x", 2.0), hit("y", 1.0)], []], limit=1)] == ["x"]
    flat = fuse([[hit("p", 1.0), hit("q", 1.0)], []], limit=2)  # equal scores: each counts whole, first seen first
    assert [(h.id, h.score) for h in flat] == [("p", round(TEXT_WEIGHT, 6)), ("q", round(TEXT_WEIGHT, 6))]


# -- fit_budget -------------------------------------------------------------------------------------------------

COUNT = default_counter().count


def item(item_id: str, text: str, kind: MemoryKind = MemoryKind.TURN) -> SearchHit:
    return SearchHit(kind=kind, id=item_id, text=text, score=1.0)


def test_whole_items_in_rank_order_while_they_fit():
    hits = [item("a", "User: I adopted a puppy.\nAssistant: Lovely."), item("b", "User: We moved to Denver.")]
    fitted, used = fit_budget(hits, "puppy Denver", 1_000, COUNT, limit=5)
    assert fitted == hits and not any(h.excerpt for h in fitted)
    assert used == sum(COUNT(h.text) for h in hits)


def test_a_long_item_is_cut_to_the_passage_that_matched_verbatim():
    filler = " ".join(f"We talked about topic number {n} at length." for n in range(60))
    text = f"{filler} Melanie painted a sunrise over the lake in 2022. {filler}"
    query = "When did Melanie paint a sunrise?"
    (fitted,), used = fit_budget([item("chunk", text, MemoryKind.CHUNK)], query, 60, COUNT, 5)
    assert fitted.excerpt and "Melanie painted a sunrise over the lake in 2022." in fitted.text
    assert fitted.text in text  # a verbatim part of the stored text
    assert used == COUNT(fitted.text) <= 60


def test_a_sentence_is_given_once_and_an_item_that_only_repeats_is_left_out():
    turn = item("t", "User: My sister Ana lives in Lisbon.\nAssistant: Nice city.")
    chunk = item("c", "My sister Ana lives in Lisbon. She works as a nurse there.", MemoryKind.CHUNK)
    summary = item("s", "My sister Ana lives in Lisbon.", MemoryKind.SUMMARY)
    fitted, _ = fit_budget([turn, summary, chunk], "sister Lisbon nurse", 1_000, COUNT, limit=5)
    assert [h.id for h in fitted] == ["t", "c"]  # the summary says nothing new
    assert fitted[1].excerpt and fitted[1].text == "She works as a nurse there."


def test_an_item_that_cannot_fit_is_skipped_and_a_smaller_one_below_it_still_fits():
    big = item("big", "word " * 400)
    small = item("small", "User: I love hiking.")
    fitted, used = fit_budget([big, small], "hiking", 20, COUNT, limit=5)
    assert [h.id for h in fitted] == ["small"] and used <= 20


def test_an_item_whose_matching_passage_cannot_fit_is_skipped_not_cut_to_what_did_not_match():
    long_match = "Melanie painted a sunrise over the lake with " + ", ".join(f"colour {n}" for n in range(30)) + "."
    summary = item("s", f"We had lunch. {long_match} Then we left.", MemoryKind.SUMMARY)
    small = item("small", "User: Melanie paints.")
    fitted, used = fit_budget([summary, small], "Melanie sunrise", 20, COUNT, limit=5)
    assert [h.id for h in fitted] == ["small"] and used <= 20  # not "We had lunch. ", which holds none of it


def test_a_line_given_by_a_turn_is_not_given_again_by_a_chunk_quoting_it():
    turn = item("t", "User: I booked the ferry to Madeira today\nAssistant: noted")
    chunk = item("c", "User: I booked the ferry to Madeira today\nAssistant: noted\nShe also packed.", MemoryKind.CHUNK)
    fitted, _ = fit_budget([turn, chunk], "ferry Madeira packed", 1_000, COUNT, limit=5)
    assert [h.id for h in fitted] == ["t", "c"] and fitted[1].text == "She also packed."


def test_the_limit_and_a_full_budget_stop_the_walk():
    hits = [item(str(n), f"User: fact number {n} about cats.") for n in range(10)]
    assert len(fit_budget(hits, "cats", 1_000, COUNT, limit=3)[0]) == 3
    fitted, used = fit_budget(hits, "cats", 25, COUNT, limit=10)
    assert used <= 25 and 1 <= len(fitted) < 10


def test_a_turn_stays_whole_when_it_fits_though_only_its_question_matches():
    turn = item("t", "User: How long have you been married?\nAssistant: Five years already!")
    (fitted,), _ = fit_budget([turn], "How long married", 100, COUNT, limit=5)
    assert fitted == turn  # the answer holds none of the query's words, and it is the answer that matters


def test_a_summary_is_cut_to_the_sentences_that_match_in_their_word_forms():
    summary = item(
        "s",
        "They talked about the weather. Caroline painted a sunrise last May. They planned a picnic.",
        MemoryKind.SUMMARY,
    )
    (fitted,), _ = fit_budget([summary], "When did Caroline paint?", 100, COUNT, limit=5)
    assert fitted.excerpt and fitted.text == "Caroline painted a sunrise last May."


def test_fusion_counts_derived_items_half_so_the_turn_comes_first():
    summary, turn = hit("summary", 10.0, MemoryKind.SUMMARY), hit("turn", 8.0)
    filler = hit("filler", 0.0)
    fused = fuse([[summary, turn, filler], [summary, turn, filler]], limit=2)
    assert [h.id for h in fused] == ["turn", "summary"]  # 0.8 of the best score beats half of it


# -- context: the session and the turns next door ------------------------------------------------------------------


def with_session(hits: list[SearchHit]) -> list[SearchHit]:
    return with_context(hits, neighbour_weight=0.0)


def test_a_turn_whose_session_also_matches_comes_before_an_equally_good_lone_match():
    lone, trip = hit("lone", 0.8, session="s1"), hit("trip", 0.8, session="s2")
    also = hit("also", 0.5, session="s2")  # another turn of the trip's session matches too
    ranked = with_session([lone, trip, also])
    assert [h.id for h in ranked] == ["trip", "lone", "also"]
    scores = {h.id: h.score for h in ranked}
    assert scores == {
        "trip": round(0.8 + SESSION_WEIGHT * 0.5, 6),
        "lone": 0.8,
        "also": round(0.5 + SESSION_WEIGHT * 0.8, 6),
    }


def test_a_turn_gains_from_the_best_other_item_of_its_session_never_from_itself():
    best, twin = hit("best", 0.9, session="s"), hit("twin", 0.9, session="s")  # equal scores: each has the other
    summary = hit("summary", 0.4, MemoryKind.SUMMARY, session="s")
    scores = {h.id: h.score for h in with_session([best, twin, summary])}
    assert scores["best"] == scores["twin"] == round(0.9 + SESSION_WEIGHT * 0.9, 6)
    alone = with_session([hit("alone", 0.7, session="t")])
    assert [(h.id, h.score) for h in alone] == [("alone", 0.7)]


def test_only_turns_gain_and_items_of_no_session_neither_gain_nor_lend():
    turn = hit("turn", 0.6, session="s")
    summary = hit("summary", 0.5, MemoryKind.SUMMARY, session="s")  # lends to the turn, gains nothing itself
    chunk = hit("chunk", 0.45, MemoryKind.CHUNK, session="s")
    insights = [hit("i1", 0.9, MemoryKind.INSIGHT), hit("i2", 0.3, MemoryKind.INSIGHT)]  # insights have no session
    scores = {h.id: h.score for h in with_session([*insights, turn, summary, chunk])}
    assert scores == {"i1": 0.9, "i2": 0.3, "turn": round(0.6 + SESSION_WEIGHT * 0.5, 6), "summary": 0.5, "chunk": 0.45}


def test_rank_fuses_every_hit_before_the_session_context_then_keeps_the_limit():
    # "deep" falls below the limit after fusion, yet lends its session's turn enough to pass "lone".
    text = [hit("lone", 10.0, session="a"), hit("near", 9.0, session="b"), hit("deep", 5.0, session="b"), hit("z", 0.0)]
    assert [h.id for h in fuse([text], 2, (1.0,))] == ["lone", "near"]  # scaled: 1.0, 0.9, 0.5, 0
    ranked = rank([text], 2, (1.0,))
    assert [(h.id, h.score) for h in ranked] == [("near", round(0.9 + SESSION_WEIGHT * 0.5, 6)), ("lone", 1.0)]


def test_a_turn_gains_from_the_better_of_the_turns_just_before_and_after_it():
    # One session: "a" (seq 4) sits between "q" (seq 3) and "x" (seq 5); the session context is left out here.
    hits = [hit("q", 0.9, session="s", seq=3), hit("a", 0.5, session="s", seq=4), hit("x", 0.2, session="s", seq=5)]
    far = hit("far", 0.6, session="t", seq=9)  # a better lone match in another session, with no turn next to it
    scores = {h.id: h.score for h in with_context([*hits, far], session_weight=0.0)}
    assert scores == {
        "q": round(0.9 + NEIGHBOUR_WEIGHT * 0.5, 6),
        "a": round(0.5 + NEIGHBOUR_WEIGHT * 0.9, 6),  # the better neighbour, the one before
        "x": round(0.2 + NEIGHBOUR_WEIGHT * 0.5, 6),
        "far": 0.6,
    }
    assert [h.id for h in with_context([*hits, far], session_weight=0.0)][:2] == ["q", "a"]


def test_turns_of_other_sessions_or_two_apart_are_not_neighbours():
    hits = [hit("a", 0.5, session="s", seq=4), hit("b", 0.9, session="t", seq=5), hit("c", 0.9, session="s", seq=6)]
    scores = {h.id: h.score for h in with_context(hits, session_weight=0.0)}
    assert scores == {"a": 0.5, "b": 0.9, "c": 0.9}


def test_rank_gives_both_contexts_from_the_fused_scores():
    text = [hit("a", 10.0, session="s", seq=1), hit("b", 5.0, session="s", seq=2), hit("z", 0.0, session="u")]
    ranked = {h.id: h.score for h in rank([text], 3, (1.0,))}  # scaled: a 1.0, b 0.5, z 0
    assert ranked == {
        "a": round(1.0 + SESSION_WEIGHT * 0.5 + NEIGHBOUR_WEIGHT * 0.5, 6),
        "b": round(0.5 + SESSION_WEIGHT * 1.0 + NEIGHBOUR_WEIGHT * 1.0, 6),
        "z": 0.0,
    }


def test_rank_takes_other_context_weights_and_without_them_is_plain_fusion():
    text = [hit("a", 10.0, session="s", seq=1), hit("b", 5.0, session="s", seq=2), hit("z", 0.0, session="u")]
    ranked = {h.id: h.score for h in rank([text], 3, (1.0,), session_weight=0.4, neighbour_weight=0.1)}
    assert ranked == {"a": round(1.0 + 0.4 * 0.5 + 0.1 * 0.5, 6), "b": round(0.5 + 0.4 + 0.1, 6), "z": 0.0}
    plain = rank([text], 3, (1.0,), session_weight=0.0, neighbour_weight=0.0)
    assert plain == fuse([text], 3, (1.0,))


class _SlowTextStore:
    """A store whose full-text search waits until cancelled, and says whether it was."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def search_text(self, *args: object) -> list[SearchHit]:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return []


class _FailingEmbedder:
    model, dimensions = "failing", 4

    async def embed(self, texts: object) -> list[list[float]]:
        raise UpstreamUnavailableError("the embedding service is down")


async def test_a_failed_embedding_cancels_the_full_text_search_it_ran_beside():
    store = _SlowTextStore()
    with pytest.raises(UpstreamUnavailableError):
        await candidates(store, _FailingEmbedder(), "alice", "garden", 40)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert store.started.is_set() and store.cancelled
