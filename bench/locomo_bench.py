"""Retrieval quality on LoCoMo: do the service's retrievers bring a question's evidence turns into the top k?

Usage: python -m bench.locomo_bench [--locomo PATH] [--limit N] [--deep 100] [--no-experiments]

LoCoMo (Maharana et al., ACL 2024; CC BY-NC 4.0) is read from its path at run time, never copied into the project;
see ../shared/bench/README.md for the data, the metric and the numbers measured on these machines.

What is measured, with the project's own code as the service runs it:
  * one ``SqliteStore`` (a temporary file) per conversation, the conversation being one user and each LoCoMo
    session one session;
  * each LoCoMo utterance stored as one ``Turn`` through ``put_turns``: user_message = "<speaker> (<session date>):
    <text>", agent_message = "" (the service's turns are user+agent pairs; here each utterance is its own turn so
    that a hit names exactly one evidence turn), embedded as the service embeds a turn (``Turn.text()``) with the
    packaged local embedder (all-MiniLM-L6-v2 int8, ONNX);
  * for each question of categories 1-4, the top k TURN items of
      (a) full text only: ``store.search_text`` (FTS5 BM25, porter stemming; query_terms drops stop words),
      (b) vector only: the query embedded, then ``store.search_vector`` (cosine),
      (c) the service's hybrid: ``retrieval.search`` (both, fused by a weighted sum of scaled scores, each turn then
          lifted by the best other hit of its session and by the turns next to it), called with top_k=5 for @5 and
          top_k=10 for @10, as a caller asking for that many would.

Metrics (as in ../shared/bench/README.md): any@k = share of questions with at least one evidence turn in the top k;
all@k = share with every evidence turn in the top k. Evidence ids written as "D1:3; D1:5" are split; ids naming no
turn are dropped and counted; a question left with no evidence is counted and left out. The baseline is the
full-text retriever measured in the same run: every retriever's any@10 is also given as a ratio to it.

Query latency: (a) one ``search_text``; (b) one query embedding plus one ``search_vector``; (c) one
``retrieval.search`` (top_k=10) end to end; all sequential, after one warm-up query per conversation (which builds
the store's vector cache, as a running service has it).

Experiments (unless --no-experiments): each question's full-text and vector rankings are also fetched --deep items
deep, and other fusion settings are replayed offline on them with the product's ``retrieval.rank`` (or reciprocal
rank fusion, defined here, which the service used before its weighted sum): full-text weight, per-retriever depth,
turn context (session and neighbours), RRF constant, and possessive "'s" removed from the query.
The replay of the service's own setting is checked against ``retrieval.search``'s actual results. Nothing in the
product is changed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from memory_core.adapters.local_embedder import build_local_embedder
from memory_core.adapters.sqlite import SqliteStore
from memory_core.config import Settings
from memory_core.domain import MemoryKind, SearchHit, Turn
from memory_core.retrieval import TEXT_WEIGHT, fuse, rank, search, search_depth

DEFAULT_LOCOMO = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "locomo" / "locomo-dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (5, 10)
TURN_ONLY = [MemoryKind.TURN]
EMBED_BATCH = 64
_SESSION = re.compile(r"session_(\d+)")
_EVIDENCE_SPLIT = re.compile(r"[;,\s]+")
_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b")


# -- data --------------------------------------------------------------------------------------------------------
@dataclass
class Question:
    sample_id: str
    category: int
    text: str
    evidence: frozenset[str]


@dataclass
class Conversation:
    sample_id: str
    turns: list[Turn]
    dia_of: dict[tuple[str, int], str]  # (session_id, seq) -> LoCoMo dia_id
    questions: list[Question]


@dataclass
class EvidenceStats:
    questions_total: int = 0
    skipped_category_5: int = 0
    evidence_strings: int = 0
    split_strings: list[str] = field(default_factory=list)  # one string naming several turns
    dropped_ids: list[tuple[str, str]] = field(default_factory=list)  # (sample_id, id naming no turn)
    no_evidence: list[tuple[str, str]] = field(default_factory=list)  # (sample_id, question) left out


def session_time(text: str) -> datetime:
    """LoCoMo session dates look like '1:56 pm on 8 May, 2023'."""
    return datetime.strptime(text, "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def load_conversations(path: Path, limit: int | None) -> tuple[list[Conversation], EvidenceStats]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if limit is not None:
        data = data[:limit]
    stats = EvidenceStats()
    conversations = []
    for conv in data:
        sample_id = conv["sample_id"]
        c = conv["conversation"]
        user_id = f"locomo-{sample_id}"
        turns: list[Turn] = []
        dia_of: dict[tuple[str, int], str] = {}
        sessions = sorted((int(m.group(1)), key) for key in c if (m := _SESSION.fullmatch(key)))
        for _number, key in sessions:
            date_text = c[f"{key}_date_time"]
            start = session_time(date_text)
            for seq, utterance in enumerate(c[key], start=1):
                turns.append(
                    Turn(
                        user_id=user_id,
                        session_id=key,
                        seq=seq,
                        turn_id=utterance["dia_id"],
                        user_message=f"{utterance['speaker']} ({date_text}): {utterance['text']}",
                        agent_message="",
                        timestamp=start + timedelta(seconds=30 * seq),
                    )
                )
                dia_of[(key, seq)] = utterance["dia_id"]
        questions = [
            Question(sample_id, category, text, frozenset(evidence))
            for category, text, evidence in scored_questions(conv, set(dia_of.values()), stats)
        ]
        conversations.append(Conversation(sample_id, turns, dia_of, questions))
    return conversations, stats


def scored_questions(
    conv: dict[str, Any], known: Collection[str], stats: EvidenceStats
) -> list[tuple[int, str, tuple[str, ...]]]:
    """(category, question, evidence ids) of the conversation's questions of categories 1-4 with evidence (counted)."""
    found = []
    for qa in conv["qa"]:
        stats.questions_total += 1
        category = int(qa["category"])
        if category not in CATEGORIES:
            stats.skipped_category_5 += 1
            continue
        evidence = evidence_of(qa, known, conv["sample_id"], stats)
        if not evidence:
            stats.no_evidence.append((conv["sample_id"], qa["question"]))
            continue
        found.append((category, str(qa["question"]), evidence))
    return found


def evidence_of(qa: dict[str, Any], known: Collection[str], sample_id: str, stats: EvidenceStats) -> tuple[str, ...]:
    """The question's evidence dia ids: strings naming several split, ids naming no utterance dropped (counted)."""
    evidence: list[str] = []
    for raw in qa.get("evidence", []):
        stats.evidence_strings += 1
        parts = [p for p in _EVIDENCE_SPLIT.split(raw.strip()) if p]
        if len(parts) > 1:
            stats.split_strings.append(raw)
        for part in parts:
            if part not in known:
                stats.dropped_ids.append((sample_id, part))
            elif part not in evidence:
                evidence.append(part)
    return tuple(evidence)


# -- metrics -----------------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Tally:
    """Per-question outcomes of one retriever: (category, any@5, any@10, all@10)."""

    rows: list[tuple[int, bool, bool, bool]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def add(self, category: int, evidence: frozenset[str], at5: Sequence[str], at10: Sequence[str]) -> None:
        found10 = evidence & set(at10[:10])
        self.rows.append((category, bool(evidence & set(at5[:5])), bool(found10), found10 == evidence))

    def rates(self, category: int | None = None) -> tuple[int, float, float, float]:
        rows = [r for r in self.rows if category is None or r[0] == category]
        n = len(rows)
        if n == 0:
            return 0, float("nan"), float("nan"), float("nan")
        any5, any10, all10 = (100 * sum(r[i] for r in rows) / n for i in (1, 2, 3))
        return n, any5, any10, all10


def dia_ids(hits: Sequence[SearchHit], dia_of: dict[tuple[str, int], str]) -> list[str]:
    return _ids(dia_hits(hits, dia_of))


def dia_hits(hits: Sequence[SearchHit], dia_of: dict[tuple[str, int], str]) -> list[SearchHit]:
    """The turn hits with their dia id as id, scores and sessions kept: what the product's rank() replays."""
    return [
        h.model_copy(update={"id": dia_of[(h.session_id or "", h.seqs[0])]})
        for h in hits
        if h.kind is MemoryKind.TURN and h.seqs
    ]


# -- fusion replays (experiments) --------------------------------------------------------------------------------
RRF_K = 5  # the reciprocal rank fusion constant the service used before its weighted sum (2026-12-05)


def rrf_fuse(rankings: Sequence[Sequence[str]], weights: Sequence[float], limit: int, k: int) -> list[str]:
    """Weighted reciprocal rank fusion: each list adds weight / (k + rank); ties by first seen."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for position, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + position)
    return sorted(scores, key=lambda item: -scores[item])[:limit]


def fixed(depth: int) -> Callable[[int], int]:
    return lambda _top_k: depth


@dataclass
class Deep:
    """One question's deep rankings (dia ids), for offline replays."""

    question: Question
    text: list[SearchHit]  # ids are dia ids
    vector: list[SearchHit]
    text_possessive: list[SearchHit]


@dataclass
class Experiment:
    name: str
    rank: Callable[[Deep, int], list[str]]  # (deep rankings, top_k) -> top_k dia ids


def experiments(deep_limit: int) -> list[Experiment]:
    def weighted(
        w_text: float = TEXT_WEIGHT,
        depth: Callable[[int], int] = search_depth,
        text_of: Callable[[Deep], list[SearchHit]] = lambda d: d.text,
    ) -> Callable[[Deep, int], list[str]]:
        def order(d: Deep, top_k: int) -> list[str]:
            n = min(depth(top_k), deep_limit)
            return [h.id for h in rank([text_of(d)[:n], d.vector[:n]], top_k, (w_text, 1 - w_text))]

        return order

    def rrf(
        k: int = RRF_K, depth: Callable[[int], int] = search_depth, w_text: float = 1.0, w_vec: float = 1.0
    ) -> Callable[[Deep, int], list[str]]:
        def order(d: Deep, top_k: int) -> list[str]:
            n = min(depth(top_k), deep_limit)
            return rrf_fuse([_ids(d.text[:n]), _ids(d.vector[:n])], [w_text, w_vec], top_k, k)

        return order

    exps = [
        Experiment(f"service: weighted sum, text {TEXT_WEIGHT}", weighted()),
        Experiment("full text only (baseline)", lambda d, top_k: _ids(d.text[:top_k])),
        Experiment(
            "weighted sum without the turn context",
            lambda d, top_k: _ids(fuse([d.text[: search_depth(top_k)], d.vector[: search_depth(top_k)]], top_k)),
        ),
    ]
    for w in (0.5, 0.7, 0.8):
        exps.append(Experiment(f"weighted sum, text {w}", weighted(w_text=w)))
    for depth in (20, 50, 100):
        if depth <= deep_limit:
            exps.append(Experiment(f"weighted sum, depth {depth}", weighted(depth=fixed(depth))))
    for k in (5, 10, 60):
        exps.append(Experiment(f"RRF k={k}, service depth", rrf(k=k)))
    exps.append(Experiment("RRF k=5, full text weight 1.5", rrf(w_text=1.5)))
    exps.append(Experiment("full text, query without possessive 's", lambda d, top_k: _ids(d.text_possessive[:top_k])))
    exps.append(Experiment("service, query without possessive 's", weighted(text_of=lambda d: d.text_possessive)))
    return exps


# -- run ---------------------------------------------------------------------------------------------------------
def log(message: str) -> None:
    print(message, flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locomo", type=Path, default=DEFAULT_LOCOMO, help="path of locomo-dev.json")
    parser.add_argument("--limit", type=int, default=None, help="only the first N conversations (a quick check)")
    parser.add_argument("--deep", type=int, default=100, help="depth of the rankings replayed by the experiments")
    parser.add_argument("--no-experiments", action="store_true", help="skip the offline fusion replays")
    args = parser.parse_args()
    run_experiments = not args.no_experiments

    import onnxruntime

    command = " ".join([".venv/bin/python -m bench.locomo_bench", *map(shlex.quote, sys.argv[1:])])
    log(f"command: {command}")
    log(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, onnxruntime {onnxruntime.__version__}"
    )
    conversations, stats = load_conversations(args.locomo, args.limit)
    n_turns = sum(len(c.turns) for c in conversations)
    n_questions = sum(len(c.questions) for c in conversations)
    log(
        f"data: {args.locomo} -> {len(conversations)} conversations "
        f"({', '.join(c.sample_id for c in conversations)}), {n_turns} turns, "
        f"{stats.questions_total} questions, {n_questions} scored (categories 1-4 with evidence)"
    )

    start = time.perf_counter()
    embedder = build_local_embedder(Settings(EMBEDDINGS_PROVIDER="local"))
    log(f"embedder: {embedder.model} ({embedder.dimensions} dims), loaded in {time.perf_counter() - start:.2f}s")

    names = ("full text (FTS5 BM25)", "vector (MiniLM)", "hybrid retrieval.search")
    tallies = {name: Tally() for name in names}
    per_conv: dict[str, dict[str, Tally]] = {}
    deeps: list[Deep] = []
    replay_mismatch = {5: 0, 10: 0}
    embed_seconds = 0.0

    with tempfile.TemporaryDirectory(prefix="locomo-bench-") as tmp:
        for conv in conversations:
            user_id = conv.turns[0].user_id
            start = time.perf_counter()
            vectors: list[list[float]] = []
            texts = [t.text() for t in conv.turns]  # what the service embeds for a turn
            for i in range(0, len(texts), EMBED_BATCH):
                vectors += await embedder.embed(texts[i : i + EMBED_BATCH])
            spent = time.perf_counter() - start
            embed_seconds += spent
            log(
                f"[{conv.sample_id}] embedded {len(texts)} turns in {spent:.1f}s "
                f"({1000 * spent / len(texts):.1f} ms/turn, batches of {EMBED_BATCH})"
            )

            store = SqliteStore(Path(tmp) / f"{conv.sample_id}.sqlite3")
            await store.open(embedder.model, embedder.dimensions)
            start = time.perf_counter()
            await store.put_turns(conv.turns, vectors)
            log(f"[{conv.sample_id}] indexed {len(conv.turns)} turns in {time.perf_counter() - start:.2f}s")

            await search(store, embedder, user_id, "warm up", 10, TURN_ONLY)  # builds the vector cache
            conv_tallies = {name: Tally() for name in names}
            per_conv[conv.sample_id] = conv_tallies
            start = time.perf_counter()
            for q in conv.questions:
                t0 = time.perf_counter()
                text_hits = await store.search_text(user_id, q.text, TURN_ONLY, 10)
                t1 = time.perf_counter()
                (vector,) = await embedder.embed([q.text])
                vector_hits = await store.search_vector(user_id, vector, TURN_ONLY, 10)
                t2 = time.perf_counter()
                hybrid10 = await search(store, embedder, user_id, q.text, 10, TURN_ONLY)
                t3 = time.perf_counter()
                hybrid5 = await search(store, embedder, user_id, q.text, 5, TURN_ONLY)

                results = {
                    names[0]: (dia_ids(text_hits, conv.dia_of),) * 2,
                    names[1]: (dia_ids(vector_hits, conv.dia_of),) * 2,
                    names[2]: (dia_ids(hybrid5, conv.dia_of), dia_ids(hybrid10, conv.dia_of)),
                }
                for name, elapsed in zip(names, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    at5, at10 = results[name]
                    for tally in (tallies[name], conv_tallies[name]):
                        tally.add(q.category, q.evidence, at5, at10)
                    tallies[name].latencies.append(elapsed)

                if run_experiments:
                    plain = _POSSESSIVE.sub("", q.text)
                    deep = Deep(
                        q,
                        dia_hits(await store.search_text(user_id, q.text, TURN_ONLY, args.deep), conv.dia_of),
                        dia_hits(await store.search_vector(user_id, vector, TURN_ONLY, args.deep), conv.dia_of),
                        dia_hits(await store.search_text(user_id, plain, TURN_ONLY, args.deep), conv.dia_of)
                        if plain != q.text
                        else [],
                    )
                    if plain == q.text:
                        deep.text_possessive = deep.text
                    deeps.append(deep)
                    for top_k, actual in ((5, results[names[2]][0]), (10, results[names[2]][1])):
                        n = search_depth(top_k)
                        replay = [h.id for h in rank([deep.text[:n], deep.vector[:n]], top_k)]
                        if replay != actual:
                            replay_mismatch[top_k] += 1
            log(
                f"[{conv.sample_id}] ran {len(conv.questions)} questions in {time.perf_counter() - start:.1f}s; "
                f"any@10 text {conv_tallies[names[0]].rates()[2]:.1f}, vector {conv_tallies[names[1]].rates()[2]:.1f}, "
                f"hybrid {conv_tallies[names[2]].rates()[2]:.1f}"
            )
            await store.close()
    await embedder.close()

    report(args, conversations, stats, names, tallies, per_conv, embed_seconds, n_turns)
    if run_experiments:
        report_experiments(experiments(args.deep), deeps, replay_mismatch, [c.sample_id for c in conversations])


def _ids(hits: Sequence[SearchHit]) -> list[str]:
    return [h.id for h in hits]


def report(
    args: argparse.Namespace,
    conversations: list[Conversation],
    stats: EvidenceStats,
    names: Sequence[str],
    tallies: dict[str, Tally],
    per_conv: dict[str, dict[str, Tally]],
    embed_seconds: float,
    n_turns: int,
) -> None:
    log("")
    log(f"embedding: {n_turns} turns in {embed_seconds:.1f}s ({1000 * embed_seconds / max(n_turns, 1):.1f} ms/turn)")
    log(
        f"evidence: {stats.evidence_strings} evidence strings in categories 1-4; "
        f"{len(stats.split_strings)} split ({', '.join(map(repr, stats.split_strings)) or '-'}); "
        f"{len(stats.dropped_ids)} ids naming no turn dropped "
        f"({', '.join(f'{s}:{i!r}' for s, i in stats.dropped_ids) or '-'}); "
        f"{len(stats.no_evidence)} questions left with no evidence, not scored; "
        f"{stats.skipped_category_5} category-5 (adversarial) questions not scored"
    )
    for sample_id, question in stats.no_evidence:
        log(f"  no evidence: {sample_id}: {question}")

    baseline = tallies[names[0]].rates()[2]
    n = tallies[names[0]].rates()[0]
    log("")
    log(f"overall, {n} questions (categories 1-4), {len(conversations)} conversations, top-k TURN items:")
    log(f"{'retriever':<26}{'any@5':>7}{'any@10':>8}{'all@10':>8}{'any@10/BM25':>13}{'median ms':>11}{'p99 ms':>9}")
    for name in names:
        _, a5, a10, all10 = tallies[name].rates()
        lat = tallies[name].latencies
        log(
            f"{name:<26}{a5:7.1f}{a10:8.1f}{all10:8.1f}{a10 / baseline:13.3f}"
            f"{1000 * statistics.median(lat):11.2f}{1000 * percentile(lat, 99):9.2f}"
        )
    log("  (latency: full text = one search_text; vector = query embedding + search_vector; hybrid = one")
    log("   retrieval.search(top_k=10) incl. its query embedding; sequential, one question at a time)")

    log("")
    log("per category (any@5 / any@10 / all@10):")
    header = f"{'retriever':<26}" + "".join(
        f"{f'{c} {label} (n={tallies[names[0]].rates(c)[0]})':>28}" for c, label in CATEGORIES.items()
    )
    log(header)
    for name in names:
        cells = []
        for c in CATEGORIES:
            _, a5, a10, all10 = tallies[name].rates(c)
            cells.append(f"{f'{a5:.1f} / {a10:.1f} / {all10:.1f}':>28}")
        log(f"{name:<26}" + "".join(cells))

    log("")
    log("per conversation (any@10):")
    log(f"{'conversation':<14}{'n':>5}" + "".join(f"{name:>26}" for name in names))
    for sample_id, conv_tallies in per_conv.items():
        count = conv_tallies[names[0]].rates()[0]
        log(f"{sample_id:<14}{count:>5}" + "".join(f"{conv_tallies[name].rates()[2]:26.1f}" for name in names))


def report_experiments(
    exps: list[Experiment], deeps: list[Deep], replay_mismatch: dict[int, int], sample_ids: list[str]
) -> None:
    log("")
    log(
        "experiments (offline replays on the same rankings; not the product's code path except the first row, "
        "which is checked against retrieval.search):"
    )
    log(
        f"  replay of the service's fusion differs from retrieval.search on {replay_mismatch[5]} questions at "
        f"top_k=5 and {replay_mismatch[10]} at top_k=10 (of {len(deeps)})"
    )
    outcomes: dict[str, list[tuple[bool, bool, bool]]] = {}
    for exp in exps:
        rows = []
        for d in deeps:
            at5, at10 = exp.rank(d, 5), exp.rank(d, 10)
            found = d.question.evidence & set(at10)
            rows.append((bool(d.question.evidence & set(at5)), bool(found), found == d.question.evidence))
        outcomes[exp.name] = rows
    service = outcomes[exps[0].name]
    log(
        f"{'setting':<46}{'any@5':>7}{'any@10':>8}{'all@10':>8}{'any@10 +/- vs service':>23}"
        f"{'  any@10 by conversation':<24}"
    )
    n = len(deeps)
    for exp in exps:
        rows = outcomes[exp.name]
        a5, a10, all10 = (100 * sum(r[i] for r in rows) / n for i in range(3))
        gained = sum(r[1] and not s[1] for r, s in zip(rows, service, strict=True))
        lost = sum(s[1] and not r[1] for r, s in zip(rows, service, strict=True))
        by_conv = []
        for sample_id in sample_ids:
            idx = [i for i, d in enumerate(deeps) if d.question.sample_id == sample_id]
            by_conv.append(f"{100 * sum(rows[i][1] for i in idx) / max(len(idx), 1):.1f}")
        log(f"{exp.name:<46}{a5:7.1f}{a10:8.1f}{all10:8.1f}{f'+{gained} -{lost}':>23}  {' '.join(by_conv)}")


if __name__ == "__main__":
    asyncio.run(main())
