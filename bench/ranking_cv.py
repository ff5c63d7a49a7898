"""Leave one conversation out: do the ranking's constants, chosen on the other conversations, hold on the one left out?

Run by ``python -m bench.retrieval_bench --cross-validate``, after its questions, on the store its service filled.

The ranking's constants (``retrieval.TEXT_WEIGHT``, ``SESSION_WEIGHT``, ``NEIGHBOUR_WEIGHT``) were chosen on the
development set, and the bench reports recall on that same set, so part of its figure may be fitted to those
conversations. This estimates how much: for each conversation in turn, the setting of a grid around the constants
that finds the most evidence within 250 words on the *other* conversations is applied to it, and the held-out
results are added up. A held-out figure close to the product's own says the constants carry to conversations they
were not chosen on (within LoCoMo; other kinds of conversation are not measured here).

It replays the questions in process, through the service's own code (``MemoryService`` on the bench's store):
for each question the two retrievers' candidates once (``retrieval.candidates``, as deep as ``/memory/retrieve``
asks for ``top_k`` 20), then ``retrieval.rank`` with each setting, walked with the bench's metric. The product's
setting is checked against what the API returned: question by question, the same words before the first evidence.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.locomo_ingest import log
from bench.retrieval_metric import Item, walk
from memory_core import retrieval
from memory_core.config import Settings
from memory_core.domain import SearchHit
from memory_core.service import MemoryService

BUDGET = 250  # words: the bar
STEP = 0.1  # the grid's spacing around each constant


@dataclass(frozen=True)
class Setting:
    """One choice of the ranking's constants."""

    text: float
    session: float
    neighbour: float

    def rank(self, rankings: Sequence[Sequence[SearchHit]], limit: int) -> list[SearchHit]:
        return retrieval.rank(
            rankings,
            limit,
            (self.text, 1 - self.text),
            session_weight=self.session,
            neighbour_weight=self.neighbour,
        )

    def label(self) -> str:
        return f"text {self.text:g}, session {self.session:g}, neighbour {self.neighbour:g}"


PRODUCT = Setting(retrieval.TEXT_WEIGHT, retrieval.SESSION_WEIGHT, retrieval.NEIGHBOUR_WEIGHT)


def grid(product: Setting = PRODUCT) -> list[Setting]:
    """The product's setting, one STEP either side of each constant, and each context weight at 0 (no context)."""

    def around(value: float, floor: float | None) -> list[float]:
        values = {round(value + d, 3) for d in (-STEP, 0.0, STEP)} | ({floor} if floor is not None else set())
        return sorted(v for v in values if 0 <= v <= 1)

    texts, sessions = around(product.text, None), around(product.session, 0.0)
    return [Setting(*values) for values in itertools.product(texts, sessions, around(product.neighbour, 0.0))]


@dataclass(frozen=True)
class Asked:
    """One question with what it needs to be walked: its conversation's acknowledged turns and its evidence."""

    sample_id: str
    evidence: Mapping[str, str]
    stored: Mapping[str, tuple[str, int]]
    rankings: list[list[SearchHit]]


def words_to_evidence(hits: Sequence[SearchHit], asked: Asked) -> int | None:
    items = [Item(h.kind.value, h.text, h.session_id, tuple(h.seqs)) for h in hits]
    return walk(items, asked.evidence, asked.stored).any_words


async def collect(settings: Settings, conversations: Sequence[Any], top_k: int) -> list[Asked]:
    """Every question's candidates, read from the store the settings name with the service's own engines."""
    service = await MemoryService.create(settings)
    asked: list[Asked] = []
    try:
        for conv in conversations:
            for q in conv.questions:
                rankings = await retrieval.candidates(
                    service.store, service.embedder, conv.user_id, q.text, retrieval.search_depth(top_k)
                )
                evidence = {dia: conv.utterances[dia] for dia in q.evidence}
                asked.append(Asked(conv.sample_id, evidence, conv.stored, rankings))
    finally:
        await service.close()
    return asked


def found_by_conversation(asked: Sequence[Asked], setting: Setting, top_k: int) -> dict[str, list[int]]:
    """Per conversation: [questions whose evidence is within BUDGET words, questions]."""
    found: dict[str, list[int]] = {}
    for a in asked:
        words = words_to_evidence(setting.rank(a.rankings, top_k), a)
        tally = found.setdefault(a.sample_id, [0, 0])
        tally[0] += words is not None and words <= BUDGET
        tally[1] += 1
    return found


def recall(tallies: Mapping[str, Sequence[int]], keep: set[str] | None = None) -> float:
    chosen = [t for sample, t in tallies.items() if keep is None or sample in keep]
    return 100 * sum(t[0] for t in chosen) / max(1, sum(t[1] for t in chosen))


def cross_validate(
    asked: Sequence[Asked], api_words: Sequence[int | None], top_k: int, settings: Sequence[Setting] | None = None
) -> dict[str, Any]:
    """Leave-one-conversation-out recall within BUDGET words, and the grid it chose from (see the module)."""
    product = [words_to_evidence(PRODUCT.rank(a.rankings, top_k), a) for a in asked]
    mismatches = sum(1 for mine, api in zip(product, api_words, strict=True) if mine != api)
    table = {s: found_by_conversation(asked, s, top_k) for s in (settings or grid())}
    samples = sorted({a.sample_id for a in asked})
    folds, held_found = [], 0
    for held in samples:
        others = set(samples) - {held}
        chosen = max(table, key=lambda s: (recall(table[s], others), s == PRODUCT))
        held_found += table[chosen][held][0]
        folds.append(
            {
                "held_out": held,
                "chosen": chosen.label(),
                "held_out_recall": round(recall(table[chosen], {held}), 2),
                "product_recall": round(recall(table[PRODUCT], {held}), 2),
                "no_context_recall": round(recall(table[Setting(PRODUCT.text, 0.0, 0.0)], {held}), 2),
            }
        )
    return {
        "budget_words": BUDGET,
        "questions": len(asked),
        "replay_mismatches": mismatches,
        "product": PRODUCT.label(),
        "product_recall": round(recall(table[PRODUCT]), 2),
        "held_out_recall": round(100 * held_found / max(1, len(asked)), 2),
        "folds": folds,
        "grid": {s.label(): round(recall(t), 2) for s, t in table.items()},
    }


def run(
    settings: Settings, conversations: Sequence[Any], api_words: Sequence[int | None], top_k: int
) -> dict[str, Any] | None:
    """Collect the candidates, cross-validate, and log what it found (None with fewer than two conversations)."""
    if len(conversations) < 2:
        log("cross-validation needs at least two conversations: skipped")
        return None
    log(f"cross-validating the ranking's constants (leave one conversation out, {BUDGET} words)")
    asked = asyncio.run(collect(settings, conversations, top_k))
    result = cross_validate(asked, api_words, top_k)
    for fold in result["folds"]:
        log(
            f"  {fold['held_out']}: chosen on the others {fold['chosen']} -> {fold['held_out_recall']:.1f} "
            f"(product {fold['product_recall']:.1f}, no context {fold['no_context_recall']:.1f})"
        )
    log(
        f"  held out {result['held_out_recall']:.1f} against the product's {result['product_recall']:.1f} on the "
        f"whole set ({len(result['grid'])} settings; the replay differs from the API on "
        f"{result['replay_mismatches']} of {result['questions']} questions)"
    )
    return result


def settings_of(env: Mapping[str, str], sqlite_path: Path) -> Settings:
    """The service's settings (its environment), on ``sqlite_path``."""
    values = {k: v for k, v in env.items() if k in Settings.model_fields}
    return Settings.model_validate({**values, "SQLITE_PATH": str(sqlite_path)})
