from memory_core.context import default_counter
from memory_core.domain import MemoryKind, SearchHit
from memory_core.retrieval import RRF_K, fit_budget, fuse


def hit(item_id: str) -> SearchHit:
    return SearchHit(kind=MemoryKind.TURN, id=item_id, text=item_id, score=0.0)


def test_fusion_rewards_items_both_retrievers_found():
    text = [hit("a"), hit("b"), hit("c")]
    vector = [hit("c"), hit("d"), hit("a")]
    fused = fuse([text, vector], limit=4)
    assert [h.id for h in fused] == ["a", "c", "b", "d"]
    assert fused[0].score == round(1 / (RRF_K + 1) + 1 / (RRF_K + 3), 6)


def test_fusion_respects_the_limit_and_handles_empty_lists():
    assert fuse([[], []], limit=3) == []
    assert [h.id for h in fuse([[hit("x"), hit("y")], []], limit=1)] == ["x"]


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
    turn = SearchHit(kind=MemoryKind.TURN, id="turn", text="t", score=0.0)
    summary = SearchHit(kind=MemoryKind.SUMMARY, id="summary", text="s", score=0.0)
    fused = fuse([[summary, turn], [summary, turn]], limit=2)
    assert [h.id for h in fused] == ["turn", "summary"]  # 2/(k+2) beats 2 * 0.5/(k+1)
