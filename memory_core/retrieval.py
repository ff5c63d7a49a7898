"""Hybrid search over one user's memory: full-text BM25 and vector similarity fused by reciprocal rank.

No language model is involved, so a search costs one embedding of the query (when an embedder is configured) and
two store queries. Without an embedder it is full-text alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from memory_core.domain import MemoryKind, SearchHit
from memory_core.ports import Embedder, Store

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
) -> list[SearchHit]:
    """The ``top_k`` memory items of ``user_id`` that best match ``query``, best first."""
    depth = max(top_k * 4, 20)  # each retriever looks deeper than top_k so fusion has something to agree on
    if embedder is None:
        return (await store.search_text(user_id, query, kinds, depth))[:top_k]
    (vector,) = await embedder.embed([query])
    text_hits, vector_hits = await asyncio.gather(
        store.search_text(user_id, query, kinds, depth),
        store.search_vector(user_id, vector, kinds, depth),
    )
    return fuse([text_hits, vector_hits], top_k)
