"""The metric of ``bench.retrieval_bench``: is a question's evidence in the words a caller would keep?

A caller with a prompt budget of B words walks the returned items in rank order and keeps each one while the words
kept so far, this item included, stay within B; it stops before the first item that would pass B (it does not skip
it to fit a shorter one further down). Words are ``len(text.split())`` of the item's ``text``.

An item **covers** an evidence utterance when it is a turn or a chunk and the utterance's text (as LoCoMo has it,
without the speaker prefix the bench adds to the stored message) appears verbatim in the item's text. Session
summaries and insights use budget but never cover a turn, even when they quote it. A chunk that holds the utterance
verbatim covers it: the caller has the exact words. A question is found at budget B when one of its evidence
utterances is covered by a kept item (``any``); ``all`` when every one of them is.

So one walk per question gives everything: the words kept through the first covering item (``any_words``) and
through the item that completes the evidence (``all_words``); the question is found at every budget B at or above
them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

COVERING_KINDS = frozenset({"turn", "chunk"})


@dataclass(frozen=True)
class Item:
    """One returned item, as the metric sees it."""

    kind: str
    text: str
    session_id: str | None = None
    seqs: tuple[int, ...] = ()

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class Walk:
    """One question's ranked items, walked once."""

    any_words: int | None  # words kept through the first item covering an evidence utterance; None: never covered
    all_words: int | None  # words kept through the item after which every evidence utterance is covered
    any_kind: str | None  # kind of that first covering item
    kinds: tuple[tuple[str, int], ...]  # (kind, words) of every item, in rank order
    id_disagreements: int  # turn items whose text-cover differs from the stored turn they are (diagnostic)


def covers(item: Item, needle: str) -> bool:
    """Whether ``item`` covers the evidence utterance whose text is ``needle`` (the rule of this module)."""
    return item.kind in COVERING_KINDS and needle in item.text


def walk(items: Sequence[Item], evidence: Mapping[str, str], stored: Mapping[str, tuple[str, int]]) -> Walk:
    """Walk ``items`` in rank order against ``evidence`` (dia id -> utterance text).

    ``stored`` maps a dia id to the (session id, seq) of the turn the bench stored it in: a turn item that is the
    evidence's turn but does not hold its text, or holds the text without being that turn (a repeated short line),
    counts as an id disagreement; the metric itself goes by text only.
    """
    used = 0
    missing = set(evidence)
    any_words: int | None = None
    all_words: int | None = None
    any_kind: str | None = None
    disagreements = 0
    for item in items:
        used += item.words
        hit = {dia for dia in missing if covers(item, evidence[dia])}
        disagreements += _disagreements(item, evidence, stored)
        if hit and any_words is None:
            any_words, any_kind = used, item.kind
        missing -= hit
        if not missing and all_words is None:
            all_words = used
    kinds = tuple((item.kind, item.words) for item in items)
    return Walk(any_words, all_words, any_kind, kinds, disagreements)


def _disagreements(item: Item, evidence: Mapping[str, str], stored: Mapping[str, tuple[str, int]]) -> int:
    if item.kind != "turn":
        return 0
    count = 0
    for dia, needle in evidence.items():
        session_id, seq = stored[dia]
        is_turn = item.session_id == session_id and seq in item.seqs
        if is_turn != (needle in item.text):
            count += 1
    return count


def found(words: int | None, budget: float) -> bool:
    """Whether a question whose evidence needs ``words`` words is found within ``budget`` words."""
    return words is not None and words <= budget


@dataclass
class Outcome:
    """One question's result for one retriever."""

    category: int
    sample_id: str
    walk: Walk
    seconds: float


@dataclass
class Tally:
    """Every question's outcome for one retriever."""

    outcomes: list[Outcome] = field(default_factory=list)

    def select(self, category: int | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if category is None or o.category == category]

    def recall(self, budget: float, category: int | None = None, *, every: bool = False) -> float:
        """Percentage of the questions found within ``budget`` words (``every``: all of their evidence)."""
        chosen = self.select(category)
        if not chosen:
            return float("nan")
        hits = sum(found(o.walk.all_words if every else o.walk.any_words, budget) for o in chosen)
        return 100 * hits / len(chosen)

    def curve(self, budgets: Iterable[float], category: int | None = None) -> list[float]:
        return [round(self.recall(b, category), 2) for b in budgets]

    def budget_use(self, budget: float) -> dict[str, float]:
        """Share (%) of the kept words that each kind takes within ``budget``, over every question."""
        words: dict[str, int] = {}
        for outcome in self.outcomes:
            used = 0
            for kind, count in outcome.walk.kinds:
                if used + count > budget:
                    break
                used += count
                words[kind] = words.get(kind, 0) + count
        total = sum(words.values()) or 1
        return {kind: round(100 * n / total, 1) for kind, n in sorted(words.items())}

    def nothing_fits(self, budget: float) -> int:
        """Questions whose first item alone is longer than ``budget`` words, so the caller keeps nothing."""
        return sum(1 for o in self.outcomes if o.walk.kinds and o.walk.kinds[0][1] > budget)

    def covering_kinds(self, budget: float) -> dict[str, int]:
        """Kind of the first covering item, for the questions found within ``budget``."""
        counts: dict[str, int] = {}
        for o in self.outcomes:
            if found(o.walk.any_words, budget) and o.walk.any_kind is not None:
                counts[o.walk.any_kind] = counts.get(o.walk.any_kind, 0) + 1
        return counts
