"""Feeding LoCoMo conversations to the running service over HTTP, as a client would (shared by the benches).

* one conversation = one user (``locomo-<sample_id>``); one LoCoMo session = one memory session (``session_<N>``):
  ``POST /sessions/start``, one ``POST /memory/store`` per turn, ``POST /sessions/end``, then ``GET`` its
  ``statusQueryGetUri`` (``/sessions/reflection``) until the reflection has finished; sessions in order, each
  reflected before the next starts;
* before ending a session (``settle``, the default) the client waits until ``GET /stats`` shows no session behind on
  its background work (``dirty_sessions`` 0), as a conversation paced like a real one would;
* ``timestamp`` = the session's date (LoCoMo gives no zone: UTC, "+00:00"); images' captions are not sent.

How utterances become turns is the ``pairing``:

* ``consecutive`` (``bench.retrieval_bench``): utterances 1+2, 3+4, ... whoever speaks first; ``user_message`` =
  "<speaker>: <text>" of the first, ``agent_message`` the same of the second; an odd last one goes alone with
  ``agent_message`` "…" (the API refuses an empty or blank message); ``turn_id`` = the first utterance's dia id;
* ``speakers`` (``bench.reflection_bench``): speaker A is the user and speaker B the agent. A turn is an utterance of
  A (``user_message``, its text as written) and B's reply (``agent_message``); B's utterances before A's first one
  go with ``user_message`` "…", an A utterance nobody answers with ``agent_message`` "…"; consecutive utterances
  of one speaker are joined by a line break. ``turn_id`` = the turn's first dia id.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from bench.http_bench import percentile
from bench.locomo_bench import session_time
from tests.support.service import MemoryServiceProcess

NO_REPLY = "…"  # the text of a missing side of a turn: the API refuses an empty or blank message
REFLECTION_TIMEOUT = 600.0
IDLE_TIMEOUT = 600.0
SESSION_KEY = re.compile(r"session_(\d+)")
Pairing = Literal["consecutive", "speakers"]
REPO = Path(__file__).resolve().parents[1]
SERVICE_CODE = ("memory_core", "http_api", "orchestrations", "devhost", "function_app.py", "run_server.py", "host.json")


# -- data --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """One turn as the bench stores it."""

    turn_id: str
    user_message: str
    agent_message: str
    dia_ids: tuple[str, ...]
    user_dia_ids: tuple[str, ...] = ()  # the utterances on the user_message side


@dataclass
class Session:
    session_id: str
    timestamp: datetime
    pairs: list[Pair]


@dataclass
class LocomoConversation:
    """A LoCoMo conversation as one user's sessions; ``stored`` is filled as the service acknowledges its turns."""

    sample_id: str
    user_id: str
    sessions: list[Session]
    utterances: dict[str, str]  # dia id -> the utterance's text
    stored: dict[str, tuple[str, int]] = field(default_factory=dict)  # dia id -> (session id, seq) as acknowledged

    @property
    def pair_count(self) -> int:
        return sum(len(s.pairs) for s in self.sessions)


def pair_up(utterances: Sequence[dict[str, Any]]) -> list[Pair]:
    """Utterances 1+2, 3+4, ... as (user, agent) turns; an odd last one alone, with ``NO_REPLY``."""
    pairs = []
    for i in range(0, len(utterances), 2):
        first, second = utterances[i], utterances[i + 1] if i + 1 < len(utterances) else None
        pairs.append(
            Pair(
                turn_id=first["dia_id"],
                user_message=f"{first['speaker']}: {first['text']}",
                agent_message=f"{second['speaker']}: {second['text']}" if second else NO_REPLY,
                dia_ids=(first["dia_id"], second["dia_id"]) if second else (first["dia_id"],),
                user_dia_ids=(first["dia_id"],),
            )
        )
    return pairs


def pair_by_speaker(utterances: Sequence[dict[str, Any]], user: str) -> list[Pair]:
    """Turns of ``user``'s utterances (user side) and the other speaker's replies (agent side), in order."""
    turns: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    for utterance in utterances:
        mine = utterance["speaker"] == user
        if not turns or (mine and turns[-1][1]):  # a user utterance after a reply opens the next turn
            turns.append(([], []))
        turns[-1][0 if mine else 1].append(utterance)
    pairs = []
    for said, replies in turns:
        both = [*said, *replies]
        pairs.append(
            Pair(
                turn_id=both[0]["dia_id"],
                user_message="\n".join(u["text"] for u in said) or NO_REPLY,
                agent_message="\n".join(u["text"] for u in replies) or NO_REPLY,
                dia_ids=tuple(u["dia_id"] for u in both),
                user_dia_ids=tuple(u["dia_id"] for u in said),
            )
        )
    return pairs


def sessions_of(conversation: dict[str, Any], pairing: Pairing = "consecutive") -> list[Session]:
    """The LoCoMo ``conversation`` object's sessions in order, its utterances paired into turns."""
    numbers = sorted(int(m.group(1)) for key in conversation if (m := SESSION_KEY.fullmatch(key)))
    user = conversation.get("speaker_a", "")
    sessions = []
    for n in numbers:
        utterances = conversation[f"session_{n}"]
        pairs = pair_up(utterances) if pairing == "consecutive" else pair_by_speaker(utterances, user)
        sessions.append(Session(f"session_{n}", session_time(conversation[f"session_{n}_date_time"]), pairs))
    return sessions


def utterances_of(conversation: dict[str, Any]) -> dict[str, str]:
    """Every utterance's text by dia id."""
    return {u["dia_id"]: u["text"] for key in conversation if SESSION_KEY.fullmatch(key) for u in conversation[key]}


def load_locomo(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """The file's conversations (the first ``limit`` of them)."""
    data: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data[:limit]


# -- the client --------------------------------------------------------------------------------------------------
def log(message: str) -> None:
    print(message, flush=True)


async def call(client: httpx.AsyncClient, method: str, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
    """One request; a 503 is retried after its Retry-After (as a client would), any other failure raises."""
    for _attempt in range(5):
        response = await client.request(method, url, json=body)
        if response.status_code != 503:
            break
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    if not response.is_success:
        raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:300]}")
    return response


@dataclass
class SessionRun:
    """One session as the client saw it."""

    user_id: str
    session_id: str
    turns: int
    store_seconds: float
    settle_seconds: float | None
    reflection_seconds: float
    status: dict[str, Any]


@dataclass
class Ingest:
    """What the ingestion took."""

    settle: bool = True  # before each /sessions/end, wait until the session's background work has caught up
    settle_seconds: list[float] = field(default_factory=list)
    sessions: int = 0
    turns: int = 0
    store_seconds: list[float] = field(default_factory=list)
    reflection_seconds: list[float] = field(default_factory=list)
    reflections: dict[str, int] = field(default_factory=dict)  # runtimeStatus -> count
    insights: dict[str, int] = field(default_factory=dict)  # insights_added/_updated/_superseded -> count
    wall_seconds: float = 0.0
    idle_wait_seconds: float = 0.0
    census: dict[str, dict[str, int]] = field(default_factory=dict)
    per_session: list[SessionRun] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "turns": self.turns,
            "wall_seconds": round(self.wall_seconds, 1),
            "turns_per_second_overall": round(self.turns / max(self.wall_seconds, 1e-9), 1),
            "store_p50_ms": round(1000 * statistics.median(self.store_seconds), 2),
            "store_p95_ms": round(1000 * percentile(self.store_seconds, 95), 2),
            "settled_before_end": self.settle,
            "settle_p50_seconds": round(statistics.median(self.settle_seconds), 2) if self.settle_seconds else None,
            "reflection_p50_seconds": round(statistics.median(self.reflection_seconds), 2),
            "reflection_max_seconds": round(max(self.reflection_seconds), 2),
            "reflections": self.reflections,
            "insights": self.insights,
            "idle_wait_seconds": round(self.idle_wait_seconds, 1),
            "store_census": self.census,
        }


async def reflect(
    client: httpx.AsyncClient, service: MemoryServiceProcess, user_id: str, session_id: str
) -> dict[str, Any]:
    """End the session and follow its statusQueryGetUri until the reflection has finished; its status document."""
    ended = await call(client, "POST", "/sessions/end", {"user_id": user_id, "session_id": session_id})
    status_uri = service.url(ended.json()["statusQueryGetUri"])
    deadline = time.monotonic() + REFLECTION_TIMEOUT
    while time.monotonic() < deadline:
        response = await call(client, "GET", status_uri)
        if response.status_code == 200:
            status: dict[str, Any] = response.json()
            return status
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the reflection of {user_id}/{session_id} did not finish within {REFLECTION_TIMEOUT:g} s")


async def ingest_session(
    client: httpx.AsyncClient,
    service: MemoryServiceProcess,
    conv: LocomoConversation,
    session: Session,
    ingest: Ingest,
) -> float:
    """Store one LoCoMo session as one memory session and wait for its reflection; the seconds it took to store."""
    await call(client, "POST", "/sessions/start", {"user_id": conv.user_id, "session_id": session.session_id})
    stamp = session.timestamp.isoformat()
    started = time.perf_counter()
    for pair in session.pairs:
        t0 = time.perf_counter()
        response = await call(
            client,
            "POST",
            "/memory/store",
            {
                "user_id": conv.user_id,
                "session_id": session.session_id,
                "turn_id": pair.turn_id,
                "user_message": pair.user_message,
                "agent_message": pair.agent_message,
                "timestamp": stamp,
            },
        )
        ingest.store_seconds.append(time.perf_counter() - t0)
        seq = int(response.json()["seq"])
        for dia in pair.dia_ids:
            conv.stored[dia] = (session.session_id, seq)
    storing = time.perf_counter() - started
    settling: float | None = None
    if ingest.settle:
        t0 = time.perf_counter()
        await wait_idle(client)
        settling = time.perf_counter() - t0
        ingest.settle_seconds.append(settling)
    t0 = time.perf_counter()
    status = await reflect(client, service, conv.user_id, session.session_id)
    reflecting = time.perf_counter() - t0
    ingest.reflection_seconds.append(reflecting)
    state = str(status["runtimeStatus"])
    ingest.reflections[state] = ingest.reflections.get(state, 0) + 1
    output = status.get("output")
    if isinstance(output, dict):
        for name in ("insights_added", "insights_updated", "insights_superseded"):
            ingest.insights[name] = ingest.insights.get(name, 0) + len(output.get(name) or [])
    ingest.sessions += 1
    ingest.turns += len(session.pairs)
    ingest.per_session.append(
        SessionRun(conv.user_id, session.session_id, len(session.pairs), storing, settling, reflecting, status)
    )
    return storing


async def ingest_all(
    client: httpx.AsyncClient,
    service: MemoryServiceProcess,
    conversations: Sequence[LocomoConversation],
    settle: bool,
) -> Ingest:
    ingest = Ingest(settle=settle)
    started = time.perf_counter()
    for i, conv in enumerate(conversations, start=1):
        conv_start = time.perf_counter()
        for j, session in enumerate(conv.sessions, start=1):
            storing = await ingest_session(client, service, conv, session, ingest)
            elapsed = time.perf_counter() - started
            log(
                f"  conversation {i}/{len(conversations)} {conv.sample_id}: session {j}/{len(conv.sessions)}, "
                f"{len(session.pairs)} turns stored at {len(session.pairs) / max(storing, 1e-9):.0f} turns/s, "
                f"reflection {ingest.reflection_seconds[-1]:.1f} s; {ingest.turns} turns in {elapsed:.0f} s "
                f"({ingest.turns / elapsed:.1f} turns/s with reflections)"
            )
        log(f"conversation {i}/{len(conversations)} {conv.sample_id} in: {time.perf_counter() - conv_start:.0f} s")
    t0 = time.perf_counter()
    await wait_idle(client)
    ingest.idle_wait_seconds = time.perf_counter() - t0
    ingest.wall_seconds = time.perf_counter() - started
    return ingest


async def wait_idle(client: httpx.AsyncClient) -> None:
    """Until GET /stats says no session is a batch or more behind (every turn indexed)."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    while time.monotonic() < deadline:
        if (await call(client, "GET", "/stats")).json()["dirty_sessions"] == 0:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"sessions still behind on their background work after {IDLE_TIMEOUT:g} s")


def census(sqlite_path: Path) -> dict[str, dict[str, int]]:
    """What the service's store holds, by kind: items and items without a vector (a check, read-only; the
    measurement itself goes through the API only)."""
    with sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT kind, count(*), sum(embedding IS NULL) FROM items WHERE active = 1 GROUP BY kind"
        ).fetchall()
    return {str(kind): {"items": int(n), "without_vector": int(missing or 0)} for kind, n, missing in rows}


# -- provenance --------------------------------------------------------------------------------------------------
def revision() -> dict[str, Any]:
    """The commit measured, and the service's files that differ from it in the working tree (if any)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", *SERVICE_CODE], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_service_files": None}
    return {"commit": commit, "uncommitted_service_files": [line[3:] for line in changed if line.strip()]}


def service_settings(service: MemoryServiceProcess) -> list[str]:
    """The service's banner lines that say how it runs; its temporary folder is named as such, not by its path."""
    wanted = ("Session Pool:", "Store:", "LLM:", "Embeddings:")
    lines = [line.strip() for line in service.output().splitlines() if line.strip().startswith(wanted)]
    return [line.replace(str(service.workdir), "<temporary folder>") for line in lines]
