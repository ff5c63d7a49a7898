"""Reflection you can trust: insights and session summaries measured against LoCoMo's own annotations (issue 13).

Usage: python -m bench.reflection_bench [--locomo PATH] [--limit N] [--out DIR] [--engine local|openai ...]

It starts the service as ``make run`` serves it (``run_server.py`` on the local host through
``tests/support/service.py``: SQLite store, the configured chat engine, no embedder: reflection does not need one) on
a free loopback port with its state in a temporary folder, and feeds it the LoCoMo development conversations (read
from ``--locomo`` at run time, never copied; CC BY-NC 4.0) over HTTP as a client would (``bench/locomo_ingest.py``,
pairing ``speakers``): speaker A is the user and speaker B the agent, one LoCoMo session is one memory session
stamped with the session's date, and every session is ended and its reflection followed to completion through its
``statusQueryGetUri`` before the next starts. Then it reads the user's insights and session summaries back
(``GET /users/{user_id}/export``) and compares them with the dataset's annotations:

* **Insights.** Ground truth: the ``observation`` annotations of speaker A (facts per speaker per session, each with
  the dia ids of the utterances it comes from). An insight **matches** an observation when (1) one of the insight's
  source turns holds, on its user side, an utterance the observation cites, and (2) they share at least
  ``MIN_SHARED`` content lemmas (``memory_core.text.lemmas``: stop words out, "went" -> "go"), not counting the two
  speakers' names and a few light words (``LIGHT``). **Precision**: share of the active insights that match some
  observation of speaker A (an insight about speaker B matches none, so it counts as wrong). **Recall**: share of
  speaker A's observations matched by some active insight. The rule is checked against a hand-labelled sample
  (``bench/reflection_labels.json``: which candidate states the observation's fact, judged by reading both); the
  agreement is printed and written.
* **Baselines, same run, same turns:** *lead*: the first sentence of every user message as an insight; *first
  person*: every user sentence with I, me, my, we, us or our as an insight. Each baseline is also ranked (most
  content lemmas first) and its best recall at precision >= ``TARGET_PRECISION`` reported, the bar the local engine
  has to clear.
* **Summaries.** Coverage: share of the content lemmas of the annotated ``session_summary`` (names, digits, months
  and a few words of the annotators' frame such as "conversation" left out) found in the session's summary, averaged
  over sessions. Baseline: *lead*, the session's first sentences (both speakers, in order) up to as many words as the
  engine's summary of that session. Also counted: summaries whose text has a sentence cut mid-way (ending in "…").
* **Cost.** Chat calls per session (counted in the service's log: the local engine logs each call at INFO; with
  ``--engine openai`` the service runs at DEBUG and the OpenAI adapter's per-request line is counted) and seconds
  per session (from ``/sessions/end`` to the reflection's completion, and the whole session with its stores).

``--engine openai`` runs the LLM engine (``LLM_PROVIDER=openai``) against ``OPENAI_BASE_URL`` (a local Ollama,
llama.cpp server or vLLM: see the README), with ``OPENAI_MODEL`` and ``OPENAI_API_KEY`` from the environment.
Writes ``<out>/reflection_bench.json`` and ``<out>/reflection_bench.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.http_bench import machine_info
from bench.locomo_bench import DEFAULT_LOCOMO
from bench.locomo_ingest import (
    NO_REPLY,
    REPO,
    Ingest,
    LocomoConversation,
    SessionRun,
    call,
    ingest_session,
    load_locomo,
    log,
    revision,
    service_settings,
    sessions_of,
    utterances_of,
    wait_idle,
)
from memory_core.text import lemmas, sentences
from tests.support.service import MemoryServiceProcess

MIN_SHARED = 2
TARGET_PRECISION = 0.8
MIN_PREFIX = 20  # a ranked baseline's precision is read from its first 20 insights on
LABELS = REPO / "bench" / "reflection_labels.json"
LIGHT = frozenset("user get go make really just also thing lot much still even gonna wanna gotta way".split())
SUMMARY_FRAME = frozenset(
    """conversation talk chat discuss mention share say tell ask pm am january february march april may june july
    august september october november december""".split()
)
FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|I'll|me|my|mine|myself|we|we're|we've|us|our|ours)\b", re.IGNORECASE)
LOCAL, LEAD, FIRST = "local", "lead", "first_person"
CHAT_LINE = {
    "local": re.compile(r"local chat: (?:summarize|summarize_session|extract_insights)\b"),
    "openai": re.compile(r"\b(?:summarize|summarize_session|extract_insights): model="),
}


# -- ground truth ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Observation:
    sample_id: str
    session_id: str
    index: int  # its position among speaker A's observations of the session
    text: str
    evidence: frozenset[str]

    @property
    def ref(self) -> str:
        return f"{self.sample_id}/{self.session_id}/{self.index}"


@dataclass
class Truth:
    """What the annotators wrote about one conversation."""

    sample_id: str
    user: str  # speaker A
    agent: str  # speaker B
    observations: list[Observation]
    summaries: dict[str, str]  # session id -> annotated summary

    @property
    def names(self) -> frozenset[str]:
        found = {self.user.lower(), self.agent.lower()}
        return frozenset(found | {n[:3] for n in found if len(n) > 3})


def truth_of(conv: dict[str, Any]) -> Truth:
    c = conv["conversation"]
    user, agent = c["speaker_a"], c["speaker_b"]
    observations = []
    for key, by_speaker in conv["observation"].items():
        session_id = key.removesuffix("_observation")
        for index, (text, evidence) in enumerate(by_speaker.get(user, [])):
            ids = evidence if isinstance(evidence, list) else re.split(r"[;,\s]+", evidence.strip())
            observations.append(Observation(conv["sample_id"], session_id, index, text, frozenset(ids)))
    summaries = {key.removesuffix("_summary"): text for key, text in conv["session_summary"].items()}
    return Truth(conv["sample_id"], user, agent, observations, summaries)


# -- candidates --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One insight of a system: its text and the utterances of the user it came from."""

    system: str
    sample_id: str
    session_id: str
    text: str
    sources: frozenset[str]  # dia ids on the user side of its source turns
    category: str = ""
    order: int = 0
    ident: str = ""  # baselines: "<dia id>#<sentence>"; engines: "<session>#<sha1 of the text>"


def user_sentences(pair_text: str) -> list[str]:
    return [s.strip() for s in sentences(pair_text) if s.strip()]


def baseline_candidates(conv: LocomoConversation) -> dict[str, list[Candidate]]:
    """Lead (first sentence of every user message) and first person (every user sentence saying I, my, we...)."""
    found: dict[str, list[Candidate]] = {LEAD: [], FIRST: []}
    order = 0
    for session in conv.sessions:
        for pair in session.pairs:
            if pair.user_message == NO_REPLY:
                continue
            for dia in pair.user_dia_ids:
                for i, sentence in enumerate(user_sentences(conv.utterances[dia])):
                    order += 1
                    made = {
                        system: Candidate(
                            system,
                            conv.sample_id,
                            session.session_id,
                            sentence,
                            frozenset({dia}),
                            "",
                            order,
                            f"{dia}#{i}",
                        )
                        for system in (LEAD, FIRST)
                    }
                    if i == 0:
                        found[LEAD].append(made[LEAD])
                    if FIRST_PERSON.search(sentence):
                        found[FIRST].append(made[FIRST])
    return found


def engine_candidates(system: str, conv: LocomoConversation, export: dict[str, Any]) -> list[Candidate]:
    """The user's active insights, each with the user-side utterances of its source turns."""
    user_side: dict[tuple[str, int], tuple[str, ...]] = {}
    for session in conv.sessions:
        for pair in session.pairs:
            session_id, seq = conv.stored[pair.dia_ids[0]]
            user_side[(session_id, seq)] = pair.user_dia_ids
    found = []
    for order, insight in enumerate(export["insights"]):
        if insight["status"] != "active":
            continue
        session_id = insight["source_session_id"]
        sources = {dia for seq in insight["source_turns"] for dia in user_side.get((session_id, seq), ())}
        digest = hashlib.sha1(insight["text"].encode()).hexdigest()[:10]
        found.append(
            Candidate(
                system,
                conv.sample_id,
                session_id,
                insight["text"],
                frozenset(sources),
                insight["category"],
                order,
                f"{session_id}#{digest}",
            )
        )
    return found


# -- the matching rule ---------------------------------------------------------------------------------------------
def terms(text: str, names: frozenset[str]) -> frozenset[str]:
    """Content lemmas of ``text`` that can tell two statements apart: no stop words, names or light words."""
    return frozenset(t for t in lemmas(text) if t not in names and t not in LIGHT)


def shared(candidate: Candidate, observation: Observation, names: frozenset[str]) -> int:
    return len(terms(candidate.text, names) & terms(observation.text, names))


def matches(candidate: Candidate, observation: Observation, names: frozenset[str]) -> bool:
    """The rule: the candidate comes from an utterance the observation cites and says at least MIN_SHARED of its
    content lemmas."""
    return bool(candidate.sources & observation.evidence) and shared(candidate, observation, names) >= MIN_SHARED


@dataclass
class Score:
    """Which candidates match which observations."""

    candidates: list[Candidate]
    correct: list[bool]
    matched: list[set[str]]  # per candidate, the observations it matches
    observations: int

    @property
    def precision(self) -> float:
        return sum(self.correct) / len(self.correct) if self.correct else 0.0

    @property
    def recall(self) -> float:
        covered = set().union(*self.matched) if self.matched else set()
        return len(covered) / self.observations if self.observations else 0.0

    def by_category(self) -> dict[str, dict[str, float]]:
        table: dict[str, list[bool]] = {}
        for candidate, ok in zip(self.candidates, self.correct, strict=True):
            table.setdefault(candidate.category or "-", []).append(ok)
        return {k: {"n": len(v), "precision": round(sum(v) / len(v), 3)} for k, v in sorted(table.items())}

    def curve(self) -> list[tuple[int, float, float]]:
        """Ranked most content lemmas first (ties: order of the conversation): (n, precision, recall) per prefix."""
        ranked = sorted(
            range(len(self.candidates)), key=lambda i: (-len(terms(self.candidates[i].text, frozenset())), i)
        )
        points, covered, right = [], set(), 0
        for n, i in enumerate(ranked, start=1):
            right += self.correct[i]
            covered |= self.matched[i]
            points.append((n, right / n, len(covered) / max(self.observations, 1)))
        return points

    def recall_at(self, precision: float) -> float:
        """The best recall of a ranked prefix (at least MIN_PREFIX insights) whose precision reaches ``precision``."""
        return max((r for n, p, r in self.curve() if n >= MIN_PREFIX and p >= precision), default=0.0)


def score(candidates: Sequence[Candidate], truths: dict[str, Truth]) -> Score:
    by_evidence: dict[tuple[str, str], list[Observation]] = {}
    for truth in truths.values():
        for o in truth.observations:
            for dia in o.evidence:
                by_evidence.setdefault((o.sample_id, dia), []).append(o)
    correct, matched = [], []
    for c in candidates:
        names = truths[c.sample_id].names
        near = {o for dia in c.sources for o in by_evidence.get((c.sample_id, dia), [])}
        hits = {o.ref for o in near if matches(c, o, names)}
        correct.append(bool(hits))
        matched.append(hits)
    total = sum(len(t.observations) for t in truths.values())
    return Score(list(candidates), correct, matched, total)


# -- summaries ---------------------------------------------------------------------------------------------------
def summary_terms(text: str, names: frozenset[str]) -> frozenset[str]:
    return frozenset(
        t for t in lemmas(text) if t not in names and t not in LIGHT and t not in SUMMARY_FRAME and not t.isdigit()
    )


def coverage(summary: str, reference: str, names: frozenset[str]) -> float:
    wanted = summary_terms(reference, names)
    return len(wanted & summary_terms(summary, names)) / len(wanted) if wanted else 0.0


def lead_summary(conv: LocomoConversation, session_id: str, budget: int) -> str:
    """The session's first sentences, both speakers in order, within ``budget`` words (whole sentences only)."""
    session = next(s for s in conv.sessions if s.session_id == session_id)
    kept: list[str] = []
    used = 0
    for pair in session.pairs:
        for dia in pair.dia_ids:
            for sentence in user_sentences(conv.utterances[dia]):
                n = len(sentence.split())
                if used + n > budget:
                    return " ".join(kept)
                kept.append(sentence)
                used += n
    return " ".join(kept)


def summary_figures(
    convs: dict[str, LocomoConversation], truths: dict[str, Truth], summaries: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """Coverage per system (the engine's summaries and the lead baseline at the same length), averaged over
    sessions."""
    rows: dict[str, list[float]] = {"engine": [], LEAD: []}
    lengths: list[int] = []
    cut = 0
    for sample_id, by_session in summaries.items():
        truth = truths[sample_id]
        for session_id, reference in truth.summaries.items():
            text = by_session.get(session_id, "")
            lengths.append(len(text.split()))
            cut += text.rstrip().endswith("\u2026")
            rows["engine"].append(coverage(text, reference, truth.names))
            lead = lead_summary(convs[sample_id], session_id, len(text.split()))
            rows[LEAD].append(coverage(lead, reference, truth.names))
    return {
        "sessions": len(lengths),
        "coverage": {name: round(statistics.mean(v), 3) if v else None for name, v in rows.items()},
        "words_mean": round(statistics.mean(lengths), 1) if lengths else None,
        "summaries_ending_in_a_cut_sentence": cut,
    }


# -- the hand-labelled sample ------------------------------------------------------------------------------------
def check_labels(path: Path, pools: dict[str, list[Candidate]], truths: dict[str, Truth]) -> dict[str, Any]:
    """The rule's verdict on each labelled pair against the label: agreement, and the rule's precision and recall
    with the labels as truth."""
    if not path.exists():
        return {"labels": None}
    labels = json.loads(path.read_text(encoding="utf-8"))
    observations = {o.ref: o for t in truths.values() for o in t.observations}
    candidates = {(c.system, c.sample_id, c.ident): c for pool in pools.values() for c in pool}
    tally = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    missing, disagreements = 0, []
    for pair in labels["pairs"]:
        c = candidates.get((pair["system"], pair["sample_id"], pair["candidate"]))
        o = observations.get(pair["observation"])
        if c is None or o is None:
            missing += 1
            continue
        rule = matches(c, o, truths[c.sample_id].names)
        key = ("t" if rule == pair["same_fact"] else "f") + ("p" if rule else "n")
        tally[key] += 1
        if rule != pair["same_fact"]:
            disagreements.append({"pair": f"{pair['candidate']} ~ {pair['observation']}", "label": pair["same_fact"]})
    judged = sum(tally.values())
    return {
        "labels": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "pairs": len(labels["pairs"]),
        "judged": judged,
        "not_in_this_run": missing,
        "agreement": round((tally["tp"] + tally["tn"]) / judged, 3) if judged else None,
        "rule_precision": round(tally["tp"] / max(tally["tp"] + tally["fp"], 1), 3),
        "rule_recall": round(tally["tp"] / max(tally["tp"] + tally["fn"], 1), 3),
        "confusion": tally,
        "disagreements": disagreements,
    }


def write_sample(path: Path, pools: dict[str, list[Candidate]], truths: dict[str, Truth], size: int) -> None:
    """Candidate/observation pairs from the same utterance, stratified by shared lemmas, for labelling by hand.
    The file holds the texts to read; it stays out of the repository (bench/results/)."""
    observations = [o for t in truths.values() for o in t.observations]
    strata: dict[int, list[dict[str, Any]]] = {}
    for system in (FIRST, LOCAL):
        for c in pools.get(system, []):
            for o in observations:
                if o.sample_id == c.sample_id and c.sources & o.evidence:
                    n = min(shared(c, o, truths[c.sample_id].names), 4)
                    strata.setdefault(n, []).append(
                        {
                            "system": system,
                            "sample_id": c.sample_id,
                            "candidate": c.ident,
                            "observation": o.ref,
                            "shared": n,
                            "candidate_text": c.text,
                            "observation_text": o.text,
                            "rule": matches(c, o, truths[c.sample_id].names),
                        }
                    )
    rng = random.Random(13)
    picked: list[dict[str, Any]] = []
    for n in sorted(strata):
        rng.shuffle(strata[n])
        picked.extend(strata[n][: size // len(strata)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(picked, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {len(picked)} pairs to label to {path}")


# -- running the service -------------------------------------------------------------------------------------------
@dataclass
class EngineRun:
    engine: str
    settings: list[str]
    candidates: list[Candidate] = field(default_factory=list)
    summaries: dict[str, dict[str, str]] = field(default_factory=dict)  # sample id -> session id -> summary
    sessions: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0


def engine_env(engine: str, threshold: int) -> dict[str, str]:
    common = {"EMBEDDINGS_PROVIDER": "none", "REFLECTION_THRESHOLD_TURNS": str(threshold)}
    if engine == "local":
        return {"LLM_PROVIDER": "local", **common}
    env = {"LLM_PROVIDER": "openai", "LOG_LEVEL": "DEBUG", **common}
    for name in ("OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY", "MODEL_TIMEOUT_SECONDS"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def chat_calls(service: MemoryServiceProcess, engine: str, start: int) -> tuple[int, int]:
    """Chat calls logged since byte ``start`` of the service's log, and the log's size now."""
    data = service.log_path.read_bytes()
    text = data[start:].decode("utf-8", errors="replace")
    return len(CHAT_LINE[engine].findall(text)), len(data)


async def run_engine(
    engine: str, service: MemoryServiceProcess, conversations: Sequence[LocomoConversation]
) -> EngineRun:
    run = EngineRun(engine, service_settings(service))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=service.base_url, timeout=600, limits=limits) as client:
        ingest = Ingest(settle=True)
        mark = service.log_path.stat().st_size
        for i, conv in enumerate(conversations, start=1):
            for session in conv.sessions:
                t0 = time.perf_counter()
                await ingest_session(client, service, conv, session, ingest)
                seconds = time.perf_counter() - t0
                calls, mark = chat_calls(service, engine, mark)
                done: SessionRun = ingest.per_session[-1]
                run.sessions.append(
                    {
                        "user_id": conv.user_id,
                        "session_id": session.session_id,
                        "turns": done.turns,
                        "status": done.status.get("runtimeStatus"),
                        "chat_calls": calls,
                        "reflection_seconds": round(done.reflection_seconds, 3),
                        "session_seconds": round(seconds, 3),
                    }
                )
            log(
                f"  {engine}: conversation {i}/{len(conversations)} {conv.sample_id} in "
                f"({len(conv.sessions)} sessions, {time.perf_counter() - started:.0f} s so far)"
            )
        await wait_idle(client)
        for conv in conversations:
            export = (await call(client, "GET", f"/users/{conv.user_id}/export")).json()
            run.candidates.extend(engine_candidates(engine, conv, export))
            run.summaries[conv.sample_id] = {s["session_id"]: s["summary"] for s in export["summaries"]}
    run.wall_seconds = time.perf_counter() - started
    return run


def conversations_of(data: Sequence[dict[str, Any]]) -> list[LocomoConversation]:
    return [
        LocomoConversation(
            sample_id=conv["sample_id"],
            user_id=f"locomo-{conv['sample_id']}",
            sessions=sessions_of(conv["conversation"], "speakers"),
            utterances=utterances_of(conv["conversation"]),
        )
        for conv in data
    ]


# -- figures -------------------------------------------------------------------------------------------------------
def insight_figures(name: str, s: Score) -> dict[str, Any]:
    return {
        "insights": len(s.candidates),
        "precision": round(s.precision, 3),
        "recall": round(s.recall, 3),
        f"recall_at_precision_{TARGET_PRECISION}": round(s.recall_at(TARGET_PRECISION), 3),
        "by_category": s.by_category() if name not in (LEAD, FIRST) else None,
    }


def cost_figures(run: EngineRun) -> dict[str, Any]:
    sessions = run.sessions
    return {
        "sessions": len(sessions),
        "chat_calls_per_session": round(statistics.mean(s["chat_calls"] for s in sessions), 2),
        "reflection_seconds_per_session": round(statistics.mean(s["reflection_seconds"] for s in sessions), 3),
        "session_seconds_per_session": round(statistics.mean(s["session_seconds"] for s in sessions), 3),
        "reflections": {k: sum(1 for s in sessions if s["status"] == k) for k in {s["status"] for s in sessions}},
        "wall_seconds": round(run.wall_seconds, 1),
    }


def chart(scores: dict[str, Score], summaries: dict[str, dict[str, Any]], path: Path) -> None:
    """Left: precision against recall (baselines ranked, engines as points). Right: summary coverage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    colors = {LEAD: "#c44e52", FIRST: "#dd8452", LOCAL: "#4c72b0", "openai": "#55a868"}
    for name, s in scores.items():
        if name in (LEAD, FIRST):
            points = s.curve()[MIN_PREFIX - 1 :]
            left.plot(
                [p[2] for p in points], [p[1] for p in points], "--", color=colors[name], label=f"{name} (ranked)"
            )
        else:
            left.plot([s.recall], [s.precision], "o", markersize=9, color=colors.get(name, "k"), label=f"{name} engine")
    left.axhline(TARGET_PRECISION, color="grey", linewidth=0.8, linestyle=":")
    left.set_xlabel("recall (share of speaker A's observations matched)")
    left.set_ylabel("precision (share of insights matching an observation)")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.grid(alpha=0.3)
    left.legend(loc="lower left", fontsize=8)
    left.set_title("insights vs LoCoMo observations of speaker A", fontsize=10)
    labels, values = [], []
    for engine, figures in summaries.items():
        labels += [f"{engine} engine", f"lead ({engine}'s length)"]
        values += [figures["coverage"]["engine"] or 0, figures["coverage"][LEAD] or 0]
    right.bar(labels, values, color=["#4c72b0", "#c44e52"] * len(summaries))
    right.set_ylim(0, 1)
    right.set_ylabel("coverage of the annotated summary's content lemmas")
    right.set_title("session summaries", fontsize=10)
    right.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(
    insights: dict[str, dict[str, Any]], summaries: dict[str, Any], costs: dict[str, Any], labels: dict[str, Any]
) -> None:
    log("")
    log(f"insights (rule: same utterance and >= {MIN_SHARED} shared content lemmas):")
    log(f"{'system':<16}{'insights':>9}{'precision':>11}{'recall':>8}{'recall@P' + str(TARGET_PRECISION):>13}")
    for name, f in insights.items():
        log(
            f"{name:<16}{f['insights']:>9}{f['precision']:>11.3f}{f['recall']:>8.3f}"
            f"{f[f'recall_at_precision_{TARGET_PRECISION}']:>13.3f}"
        )
        if f["by_category"]:
            log(f"{'':<16}by category: {f['by_category']}")
    for engine, f in summaries.items():
        log(f"summaries ({engine}): {f}")
    for engine, f in costs.items():
        log(f"cost ({engine}): {f}")
    log(f"hand-labelled check of the rule: {labels}")


def evaluate(
    runs: Sequence[EngineRun], baselines: dict[str, list[Candidate]], truths: dict[str, Truth]
) -> tuple[dict[str, Score], dict[str, Any]]:
    scores = {name: score(pool, truths) for name, pool in baselines.items()}
    for run in runs:
        scores[run.engine] = score(run.candidates, truths)
    return scores, {name: insight_figures(name, s) for name, s in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locomo", type=Path, default=DEFAULT_LOCOMO, help="path of locomo-dev.json")
    parser.add_argument("--limit", type=int, default=None, help="only the first N conversations")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where the JSON and PNG go")
    parser.add_argument(
        "--engine", action="append", choices=("local", "openai"), help="engines to run (default: local)"
    )
    parser.add_argument(
        "--threshold",
        type=int,
        default=1,
        help="REFLECTION_THRESHOLD_TURNS of the service (default 1: every session's insights are extracted; the "
        "service's default, 15, leaves most LoCoMo sessions, 11 turns on average, without any)",
    )
    parser.add_argument("--labels", type=Path, default=LABELS, help="the hand-labelled pairs")
    parser.add_argument("--sample", type=int, default=0, help="also write N pairs to label to <out>/label_sample.json")
    args = parser.parse_args()
    engines = args.engine or ["local"]
    if "openai" in engines and not os.environ.get("OPENAI_BASE_URL"):
        sys.exit("--engine openai needs OPENAI_BASE_URL (and OPENAI_MODEL) in the environment")
    command = shlex.join([".venv/bin/python", "-m", "bench.reflection_bench", *sys.argv[1:]])
    log(f"machine: {machine_info()}\ncommand: {command}")
    started = time.perf_counter()
    data = load_locomo(args.locomo, args.limit)
    truths = {conv["sample_id"]: truth_of(conv) for conv in data}
    convs = {c.sample_id: c for c in conversations_of(data)}
    log(
        f"data: {args.locomo}: {len(data)} conversations, {sum(len(c.sessions) for c in convs.values())} sessions, "
        f"{sum(c.pair_count for c in convs.values())} turns; {sum(len(t.observations) for t in truths.values())} "
        "observations of speaker A"
    )
    runs = []
    for engine in engines:
        conversations = conversations_of(data)
        with tempfile.TemporaryDirectory(prefix="reflection-bench-") as workdir:
            env = engine_env(engine, args.threshold)
            with MemoryServiceProcess(Path(workdir) / "service", env, start_timeout=60) as service:
                log(f"service ({engine}): " + "; ".join(service_settings(service)))
                runs.append(asyncio.run(run_engine(engine, service, conversations)))
        convs = {c.sample_id: c for c in conversations}
    baselines: dict[str, list[Candidate]] = {LEAD: [], FIRST: []}
    for conv in convs.values():
        for name, pool in baseline_candidates(conv).items():
            baselines[name].extend(pool)
    scores, insights = evaluate(runs, baselines, truths)
    pools = {**baselines, **{r.engine: r.candidates for r in runs}}
    labels = check_labels(args.labels, pools, truths)
    summaries = {r.engine: summary_figures(convs, truths, r.summaries) for r in runs}
    costs = {r.engine: cost_figures(r) for r in runs}
    report(insights, summaries, costs, labels)
    total = time.perf_counter() - started
    log(f"\nran in {total / 60:.1f} min")
    document = {
        "machine": machine_info(),
        "command": command,
        "seconds": round(total, 1),
        "revision": revision(),
        "service": {r.engine: r.settings for r in runs},
        "data": {
            "path": os.path.relpath(args.locomo.resolve(), REPO),
            "conversations": list(truths),
            "sessions": sum(len(c.sessions) for c in convs.values()),
            "turns": sum(c.pair_count for c in convs.values()),
            "observations_of_speaker_a": sum(len(t.observations) for t in truths.values()),
        },
        "rule": {
            "match": f"same utterance (an insight's source turn holds one the observation cites) and at least "
            f"{MIN_SHARED} shared content lemmas, speakers' names and light words {sorted(LIGHT)} left out",
            "precision": "share of active insights matching some observation of speaker A",
            "recall": "share of speaker A's observations matched by some active insight",
            "recall_at_precision": f"best recall of a prefix of at least {MIN_PREFIX} insights, ranked most content "
            f"lemmas first, whose precision is at least {TARGET_PRECISION}",
            "summary_coverage": "share of the annotated summary's content lemmas in the summary (names, digits, "
            f"months and {sorted(SUMMARY_FRAME - {'january'})[:6]}... left out), mean over sessions",
        },
        "label_check": labels,
        "insights": insights,
        "summaries": summaries,
        "cost": costs,
        "per_session": {r.engine: r.sessions for r in runs},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reflection_bench.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    chart(scores, summaries, args.out / "reflection_bench.png")
    log(f"wrote {args.out / 'reflection_bench.json'} and {args.out / 'reflection_bench.png'}")
    if args.sample:
        write_sample(args.out / "label_sample.json", pools, truths, args.sample)


if __name__ == "__main__":
    main()
