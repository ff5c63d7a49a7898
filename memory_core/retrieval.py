"""Hybrid search over one user's memory: full-text BM25 and vector similarity, fused by a weighted sum of scores.

Each turn is then lifted by how well the rest of its session, and the turns next to it, match. No language model
is involved, so a search costs one embedding of the query (when an embedder is configured) and two store queries.
Without an embedder it is full-text alone.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import accumulate
from typing import NamedTuple

from memory_core.domain import ItemFilter, MemoryKind, SearchHit
from memory_core.ports import Embedder, Store
from memory_core.text import content_words, lemmas, line_sentences

logger = logging.getLogger(__name__)

# Fusion: each retriever's scores are scaled to [0, 1] over its own hits (min-max), and an item's fused score is
# TEXT_WEIGHT times its full-text score plus the rest times its vector score. Unlike reciprocal rank fusion, how far
# apart two hits score counts, not only their order: a turn that matches the query's rare words well stays ahead of
# one the vectors rank a place higher. Measured through the API with bench/retrieval_bench.py (the development set,
# evidence within a caller's 250 / 500 / 1000 words, top_k 20), against RRF with k=5 in the same conditions
# (71.0 / 82.0 / 87.4): text weight 0.3 gave 62.1 / 73.0 / 85.3, 0.5 71.5 / 82.1 / 87.0, 0.6 72.8 / 82.8 / 87.0,
# 0.7 73.2 / 81.8 / 86.7, 0.8 73.2 / 80.9 / 86.3. The local MiniLM alone finds less than BM25 here (any@10 56.3
# against 69.7, bench/locomo_bench.py), which is why full text weighs more.
TEXT_WEIGHT = 0.6
# Chunks and session summaries are derived from the turns they cover: they count half in fusion, so that the turn
# that says a thing comes before a summary that repeats it (measured with RRF and the budget: 69.3 -> 70.5 at 250
# words, 80.7 -> 81.4 at 500, 86.8 -> 87.2 at 1000; kept with the weighted sum, whose runs above include it).
DERIVED_WEIGHT: dict[MemoryKind, float] = {MemoryKind.CHUNK: 0.5, MemoryKind.SUMMARY: 0.5}
# Session context: a turn gains SESSION_WEIGHT times the fused score of the best other hit from its session (a turn,
# chunk or summary of it). A session is a conversation about something; when several of its items match, the turn
# there is likelier to be the one that answers than an equally good lone match elsewhere (what passage retrieval
# calls document-level evidence). Only turns gain, so a summary never climbs above the turns it repeats. Measured
# through the API's ranking (bench/retrieval_bench.py's questions replayed on its ingested store, 250 / 500 / 1000
# words, top_k 20), against 72.8 / 82.8 / 87.0 without it: 0.2 gave 76.6 / 85.3 / 88.8, 0.3 77.5 / 85.3 / 89.3,
# 0.4 77.6 / 85.1 / 89.5; each of the five conversations gained (2.0 to 8.1 points at 250 words). Lifting chunks and
# summaries as well gave 77.0 / 84.7 / 88.7; taking the session's summary alone as its evidence, 73.6 / 83.2 / 87.1.
SESSION_WEIGHT = 0.3
# Neighbour context: a turn also gains NEIGHBOUR_WEIGHT times the fused score of the turn just before or after it in
# its session, when that turn is among the candidates (the better of the two). A conversation answers a question in
# the next turn and picks a subject up again in the one after; a match next door says the talk there is about the
# query. Measured as above, with the session context, against 77.5 / 85.3 / 89.3: 0.1 gave 78.3 / 85.7 / 89.5, 0.2
# 78.7 / 86.2 / 89.6, 0.3 78.7 / 86.2 / 89.6; with 0.2 no conversation lost at 250 words (three gained 0.6 to 2.8).
# It costs no store read: neighbours outside the candidates count nothing.
NEIGHBOUR_WEIGHT = 0.2
ALL_KINDS: tuple[MemoryKind, ...] = tuple(MemoryKind)


def rank(
    rankings: Sequence[Sequence[SearchHit]],
    limit: int,
    weights: Sequence[float] = (TEXT_WEIGHT, 1 - TEXT_WEIGHT),
    *,
    session_weight: float = SESSION_WEIGHT,
    neighbour_weight: float = NEIGHBOUR_WEIGHT,
) -> list[SearchHit]:
    """The ``limit`` best hits: the rankings fused (``fuse``), then each turn given its context.

    The context (``with_context``) comes before the cut, so hits below the limit still count for their turns. The
    weights are the module's constants unless given (``bench/ranking_cv.py`` tries others).
    """
    scores, hits = _fused_scores(rankings, weights)
    return _best(_with_context(scores, hits, session_weight, neighbour_weight), hits, limit)


def fuse(
    rankings: Sequence[Sequence[SearchHit]], limit: int, weights: Sequence[float] = (TEXT_WEIGHT, 1 - TEXT_WEIGHT)
) -> list[SearchHit]:
    """A weighted sum of each list's scores, scaled to [0, 1] within the list; best first, ties by first seen.

    A list's best hit scores 1 and its worst 0 (every hit 1 when they all score the same); a list that misses an
    item adds nothing for it. Chunks and summaries count ``DERIVED_WEIGHT`` of their score.
    """
    scores, hits = _fused_scores(rankings, weights)
    return _best(scores, hits, limit)


def with_context(
    hits: Sequence[SearchHit], session_weight: float = SESSION_WEIGHT, neighbour_weight: float = NEIGHBOUR_WEIGHT
) -> list[SearchHit]:
    """``hits``, each turn's score raised by its context, best first (ties in their order).

    A turn gains ``session_weight`` times the best score of another hit of its session, and ``neighbour_weight``
    times the better score of the turns just before and after it among ``hits``, both from the scores as given.
    Items of no session (insights) and derived items keep their scores.
    """
    by_id = {hit.id: hit for hit in hits}
    scores = {hit.id: hit.score for hit in hits}
    return _best(_with_context(scores, by_id, session_weight, neighbour_weight), by_id, len(by_id))


def _fused_scores(
    rankings: Sequence[Sequence[SearchHit]], weights: Sequence[float]
) -> tuple[dict[str, float], dict[str, SearchHit]]:
    scores: dict[str, float] = {}
    first: dict[str, SearchHit] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if not ranking:
            continue
        high, low = max(h.score for h in ranking), min(h.score for h in ranking)
        for hit in ranking:
            scaled = (hit.score - low) / (high - low) if high > low else 1.0
            scores[hit.id] = scores.get(hit.id, 0.0) + weight * DERIVED_WEIGHT.get(hit.kind, 1.0) * scaled
            first.setdefault(hit.id, hit)
    return scores, first


def _with_context(
    scores: dict[str, float], hits: dict[str, SearchHit], session_weight: float, neighbour_weight: float
) -> dict[str, float]:
    first: dict[str, float] = {}  # session -> its best score
    second: dict[str, float] = {}  # session -> its second best (0 when it has one hit)
    turns: dict[tuple[str, int], float] = {}  # (session, seq) -> a turn's score
    for item_id, score in scores.items():
        hit = hits[item_id]
        session = hit.session_id
        if session is None:
            continue
        if session not in first or score > first[session]:
            second[session], first[session] = first.get(session, 0.0), score
        elif score > second[session]:
            second[session] = score
        if hit.kind is MemoryKind.TURN and hit.seqs:
            turns[(session, hit.seqs[0])] = score
    lifted = dict(scores)
    for item_id, score in scores.items():
        hit = hits[item_id]
        session = hit.session_id
        if hit.kind is not MemoryKind.TURN or session is None:
            continue
        other = second[session] if score == first[session] else first[session]  # the best that is not this turn
        seq = hit.seqs[0] if hit.seqs else None
        beside = max(turns.get((session, seq - 1), 0.0), turns.get((session, seq + 1), 0.0)) if seq is not None else 0.0
        lifted[item_id] = score + session_weight * other + neighbour_weight * beside
    return lifted


def _best(scores: dict[str, float], hits: dict[str, SearchHit], limit: int) -> list[SearchHit]:
    ordered = sorted(scores, key=lambda item_id: -scores[item_id])[:limit]
    return [hits[item_id].model_copy(update={"score": round(scores[item_id], 6)}) for item_id in ordered]


def search_depth(top_k: int) -> int:
    """How many hits each retriever returns for ``top_k`` results: deeper, so fusion has something to agree on."""
    return max(top_k * 2, 20)


async def candidates(
    store: Store,
    embedder: Embedder | None,
    user_id: str,
    query: str,
    depth: int,
    kinds: Sequence[MemoryKind] = ALL_KINDS,
    where: ItemFilter | None = None,
) -> list[list[SearchHit]]:
    """Each retriever's ``depth`` best hits for ``query``: full text, then (with an embedder) the query's vector."""
    if embedder is None:
        return [await store.search_text(user_id, query, kinds, depth, where)]
    # The full-text search runs while the query is embedded (the store and the embedder work on their own threads).
    # It is handed to the store first (the sleep lets its task start): its setup then runs on this thread before the
    # embedder's thread wakes, rather than holding the GIL that thread needs to begin. Measured through the API (two
    # hosts side by side, the development set's questions alternated, seven rounds): 0.08-0.12 ms off top_k 20's
    # p50 and 0.16-0.29 ms off max_tokens' at 1000 words, in every round.
    text_search = asyncio.ensure_future(store.search_text(user_id, query, kinds, depth, where))
    try:
        await asyncio.sleep(0)
        (vector,) = await embedder.embed([query])
        vector_hits = await store.search_vector(user_id, vector, kinds, depth, where)
    except BaseException:
        text_search.cancel()
        raise
    return [await text_search, vector_hits]


async def search(
    store: Store,
    embedder: Embedder | None,
    user_id: str,
    query: str,
    top_k: int,
    kinds: Sequence[MemoryKind] = ALL_KINDS,
    where: ItemFilter | None = None,
) -> list[SearchHit]:
    """The ``top_k`` memory items of ``user_id`` that best match ``query``, best first."""
    rankings = await candidates(store, embedder, user_id, query, search_depth(top_k), kinds, where)
    return rank(rankings, top_k) if len(rankings) > 1 else rank(rankings, top_k, (1.0,))


# -- results that fit a budget ----------------------------------------------------------------------------------

MIN_PASSAGE_TOKENS = 8  # less room than this holds no useful passage: the budget is full


def fit_budget(
    hits: Sequence[SearchHit], query: str, budget: int, count: Callable[[str], int], limit: int
) -> tuple[list[SearchHit], int]:
    """The best-ranked hits whose texts fit ``budget`` tokens together, and the tokens they take.

    Walks ``hits`` in rank order and keeps of each item the passage that matched: the shortest run of its units (a
    turn's lines, another item's sentences) that holds every query word the item holds and that no earlier item
    gave, within what is left of the budget. A turn, a question with its answer, stays whole when it fits. An item
    that matches no query word (a hit of the vector search) is kept whole when it fits, else its first units that
    do. A unit is given at most once, so an item that only repeats earlier ones is left out, and an item with no
    passage that fits is skipped (a smaller one further down may still fit). A passage is a verbatim part of the
    stored text; when it is not the whole text the item is an ``excerpt``. At most ``limit`` items.
    """
    terms = frozenset(lemmas(query))
    given: set[str] = set()
    chosen: list[SearchHit] = []
    used = 0
    for hit in hits:
        if len(chosen) >= limit or budget - used < MIN_PASSAGE_TOKENS:
            break
        passage = _passage(hit, terms, given, budget - used, count)
        if passage is None:
            continue
        chosen.append(passage.hit)
        used += passage.tokens
        given.update(passage.keys)
    return chosen, used


_SPEAKER = re.compile(r"^\s*[^\W\d_]{1,40}:\s")  # "User: ", "Assistant: ", "Melanie: " before a turn's line


# The same turns come back for many queries of a user, so what a unit's words are is remembered rather than worked out
# again on every query (a query's budget walk took 0.56 ms at 250 words and 0.88 ms at 1000 before, in process).
UNIT_CACHE_SIZE = 8192


@lru_cache(maxsize=UNIT_CACHE_SIZE)
def _unit_key(unit: str) -> str:
    """What makes two units the same: their words, without a speaker's label, stop words, case or punctuation."""
    return " ".join(content_words(_SPEAKER.sub("", unit, count=1)))


def _units(hit: SearchHit) -> list[str]:
    """The pieces a passage of ``hit`` is made of, verbatim: a turn's lines (one speaker each), else sentences.

    Other items are split into lines first, then each line into sentences, so that a line another item gave whole is
    recognised as given.
    """
    if hit.kind is MemoryKind.TURN:
        return hit.text.splitlines(keepends=True)
    return line_sentences(hit.text)


@lru_cache(maxsize=UNIT_CACHE_SIZE)
def _unit_lemmas(unit: str) -> frozenset[str]:
    return frozenset(lemmas(unit))


class _Passage(NamedTuple):
    hit: SearchHit
    tokens: int
    keys: list[str]


def _passage(
    hit: SearchHit, terms: frozenset[str], given: set[str], room: int, count: Callable[[str], int]
) -> _Passage | None:
    """The part of ``hit`` to return (see ``fit_budget``), or None when nothing of it fits or is new."""
    units = _units(hit)
    keys = [_unit_key(u) for u in units]
    fresh = [not key or key not in given for key in keys]
    if not any(key and ok for key, ok in zip(keys, fresh, strict=True)):
        return None  # everything it says was given already
    if hit.kind is MemoryKind.TURN and all(fresh):
        # A turn is a question and its answer: the answer seldom repeats the query's words, so the turn stays whole
        # when it fits.
        tokens = count(hit.text)
        if tokens <= room:
            return _Passage(hit, tokens, [key for key in keys if key])
    start, end = _best_run(units, fresh, terms, room, count)
    while end > start:
        text = "".join(units[start:end]).strip()
        tokens = count(text)
        if tokens <= room:  # the sum of the units' counts may be a token short of the whole's
            chosen = [key for key in keys[start:end] if key]
            if (start, end) == (0, len(units)):
                return _Passage(hit, tokens, chosen)
            return _Passage(hit.model_copy(update={"text": text, "excerpt": True}), tokens, chosen)
        end -= 1
    return None


def _best_run(
    units: list[str],
    fresh: list[bool],
    terms: frozenset[str],
    room: int,
    count: Callable[[str], int],
) -> tuple[int, int]:
    """``(start, end)`` of the passage ``units[start:end]`` to keep: fresh units within ``room`` tokens.

    The run that holds most query words, then the shortest such run, then the first. When no fresh unit holds a query
    word, the longest run from the first fresh unit. (0, 0) when not even one unit fits, or when fresh units hold
    query words but none of them fits (the item's other units would spend the budget on what did not match).
    """
    tokens = [0, *accumulate(count(u) for u in units)]
    words = [_unit_lemmas(unit) & terms for unit in units]
    best, best_score = (0, 0), (0, 0)
    for start in range(len(units)):
        matched: set[str] = set()
        for end in range(start + 1, len(units) + 1):
            size = tokens[end] - tokens[start]
            if not fresh[end - 1] or size > room:
                break
            matched |= words[end - 1]
            score = (len(matched), -size)
            if matched and score > best_score:
                best, best_score = (start, end), score
    if best != (0, 0):
        return best
    if any(ok and found for ok, found in zip(fresh, words, strict=True)):
        return 0, 0
    first = fresh.index(True)
    end = first
    while end < len(units) and fresh[end] and tokens[end + 1] - tokens[first] <= room:
        end += 1
    return first, end
