"""Hybrid search over one user's memory: full-text BM25 and vector similarity fused by reciprocal rank.

No language model is involved, so a search costs one embedding of the query (when an embedder is configured) and
two store queries. Without an embedder it is full-text alone.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from itertools import accumulate

from memory_core.domain import ItemFilter, MemoryKind, SearchHit
from memory_core.ports import Embedder, Store
from memory_core.text import content_words, query_terms, sentences

logger = logging.getLogger(__name__)

# The constant of reciprocal rank fusion. The customary 60 makes fusion "intersection first": at the depth searched
# here, any item both retrievers found (even 40th in each) outscores the best item only one of them found. With 10,
# a retriever's top hits keep their place. Measured with bench/locomo_bench.py (5 LoCoMo conversations, 760
# questions, top 10 turns): any@10 70.7 -> 73.8, all@10 58.3 -> 61.6, no conversation worse, and no longer
# sensitive to the search depth (73.9 at depth 100).
RRF_K = 10
ALL_KINDS: tuple[MemoryKind, ...] = tuple(MemoryKind)


def fuse(rankings: Sequence[Sequence[SearchHit]], limit: int, k: int = RRF_K) -> list[SearchHit]:
    """Reciprocal rank fusion: each list adds 1 / (k + rank) to an item's score; best first, ties by first seen."""
    scores: dict[str, float] = {}
    first: dict[str, SearchHit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
            first.setdefault(hit.id, hit)
    ordered = sorted(scores, key=lambda item_id: -scores[item_id])
    return [first[item_id].model_copy(update={"score": round(scores[item_id], 6)}) for item_id in ordered[:limit]]


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
    depth = max(top_k * 4, 20)  # each retriever looks deeper than top_k so fusion has something to agree on
    if embedder is None:
        return (await store.search_text(user_id, query, kinds, depth, where))[:top_k]
    (vector,) = await embedder.embed([query])
    text_hits, vector_hits = await asyncio.gather(
        store.search_text(user_id, query, kinds, depth, where),
        store.search_vector(user_id, vector, kinds, depth, where),
    )
    return fuse([text_hits, vector_hits], top_k)


# -- results that fit a budget ----------------------------------------------------------------------------------

MIN_PASSAGE_TOKENS = 8  # less room than this holds no useful passage: the budget is full


def fit_budget(
    hits: Sequence[SearchHit], query: str, budget: int, count: Callable[[str], int], limit: int
) -> tuple[list[SearchHit], int]:
    """The best-ranked hits whose texts fit ``budget`` tokens together, and the tokens they take.

    Walks ``hits`` in rank order. A sentence is given at most once: an item whose every sentence an earlier one
    gave is left out. An item that does not fit whole, or repeats part of an earlier one, is cut to the contiguous
    run of sentences (and lines) not given yet that matches most of the query's words and fits what is left: it is
    then an ``excerpt``, a verbatim part of the stored text. An item with no such run is skipped, and a smaller one
    further down may still fit. At most ``limit`` items.
    """
    terms = frozenset(query_terms(query))
    given: set[str] = set()
    chosen: list[SearchHit] = []
    used = 0
    for hit in hits:
        if len(chosen) >= limit or budget - used < MIN_PASSAGE_TOKENS:
            break
        fitted = _fit(hit, terms, given, budget - used, count)
        if fitted is None:
            continue
        chosen.append(fitted)
        used += count(fitted.text)
        given.update(key for key in map(_sentence_key, sentences(fitted.text)) if key)
    return chosen, used


_SPEAKER = re.compile(r"^\s*[^\W\d_]{1,40}:\s")  # "User: ", "Assistant: ", "Melanie: " before a turn's line


def _sentence_key(sentence: str) -> str:
    """What makes two sentences the same: their words, without a speaker's label, stop words, case or punctuation."""
    return " ".join(content_words(_SPEAKER.sub("", sentence, count=1)))


def _fit(
    hit: SearchHit, terms: frozenset[str], given: set[str], room: int, count: Callable[[str], int]
) -> SearchHit | None:
    """``hit`` whole when it fits and repeats nothing, else its best passage that does; None when there is none."""
    pieces = sentences(hit.text)
    keys = [_sentence_key(p) for p in pieces]
    fresh = [not key or key not in given for key in keys]
    if all(fresh) and count(hit.text) <= room:
        return hit
    if not any(key and ok for key, ok in zip(keys, fresh, strict=True)):
        return None  # everything it says was given already
    start, end = _best_run(pieces, keys, fresh, terms, room, count)
    if start == end:
        return None
    text = "".join(pieces[start:end]).strip()
    while count(text) > room and end - start > 1:  # the sum of the pieces' counts may be a token short
        end -= 1
        text = "".join(pieces[start:end]).strip()
    if count(text) > room:
        return None
    return hit.model_copy(update={"text": text, "excerpt": True})


def _best_run(
    pieces: list[str],
    keys: list[str],
    fresh: list[bool],
    terms: frozenset[str],
    room: int,
    count: Callable[[str], int],
) -> tuple[int, int]:
    """The passage to keep: ``(start, end)`` of the best run ``pieces[start:end]``.

    The best run is made of fresh pieces within ``room`` tokens and holds most query words; then the longest such
    run; then the first. (0, 0) when not even one piece fits.
    """
    tokens = [0, *accumulate(count(p) for p in pieces)]
    words = [set(key.split()) & terms for key in keys]
    best, best_score = (0, 0), (-1, -1)
    for start in range(len(pieces)):
        matched: set[str] = set()
        for end in range(start + 1, len(pieces) + 1):
            if not fresh[end - 1] or tokens[end] - tokens[start] > room:
                break
            matched |= words[end - 1]
            score = (len(matched), tokens[end] - tokens[start])
            if score > best_score:
                best, best_score = (start, end), score
    return best
