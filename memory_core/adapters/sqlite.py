"""The embedded store: one SQLite file with WAL, FTS5 (porter) for full text and float32 vectors in the same rows.

Every searchable memory item (turn, chunk, session summary, insight) is a row of ``items``; the domain object is kept
as JSON in ``doc`` (with a schema version) next to the columns queries need. All work runs on one dedicated thread
that owns the connection, so the event loop never blocks on disk and writes are serialised without locks.

Forgetting a user leaves nothing of them in the file: ``secure_delete`` zeroes deleted rows, the full-text index is
merged so that no segment keeps the deleted terms, and the WAL is checkpointed and truncated, so neither the database
nor its WAL holds an old copy of a page. A pending forget is a row of ``forgets``, checked in the same transaction as
every session start, turn and memory item written for the user.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from memory_core import session as rules
from memory_core.domain import (
    Chunk,
    Insight,
    ItemFilter,
    MemoryKind,
    SearchHit,
    SessionRecord,
    SessionStatus,
    SessionSummary,
    Turn,
    turn_doc_id,
)
from memory_core.errors import EmbeddingDimensionMismatchError, SessionNotFoundError, UserForgettingError
from memory_core.ports import (
    AppendOutcome,
    PendingForget,
    RecordChange,
    RecordUpdate,
    SessionFigures,
    SessionGuard,
    UserDeletion,
    UserExport,
    Vector,
)
from memory_core.session import TurnInput
from memory_core.text import date_words, query_terms

logger = logging.getLogger(__name__)

DOC_SCHEMA_VERSION = 1
# Version 2 keys a turn's row by its turn_id instead of its seq (the same turn_id is the same turn at any distance).
# Version 3 indexes a turn's date words (``when_text``) in full text beside its text.
# Version 4 keeps a version per user (``user_versions``) that every write of the user's items changes.
STORE_SCHEMA_VERSION = 4
_T = TypeVar("_T")
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Users whose forget began and is not complete: their writes are refused (see Store.begin_forget).
CREATE TABLE IF NOT EXISTS forgets (user_id TEXT PRIMARY KEY, began_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    status TEXT NOT NULL,
    last_activity TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (user_id, session_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_activity ON sessions (user_id, last_activity);
CREATE INDEX IF NOT EXISTS sessions_by_status ON sessions (status, last_activity);
CREATE TABLE IF NOT EXISTS items (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    session_id TEXT,
    first_seq INTEGER,
    last_seq INTEGER,
    turn_id TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    ts TEXT NOT NULL,
    text TEXT NOT NULL,
    when_text TEXT,  -- a turn's day in words ("8 May 2023"), searched by full text only; NULL for other kinds
    scope TEXT NOT NULL,
    doc TEXT NOT NULL,
    embedding BLOB
);
CREATE INDEX IF NOT EXISTS items_by_session ON items (user_id, kind, session_id, first_seq);
CREATE INDEX IF NOT EXISTS items_by_time ON items (user_id, kind, ts);
CREATE UNIQUE INDEX IF NOT EXISTS turns_by_turn_id ON items (user_id, session_id, turn_id) WHERE kind = 'turn';
-- A new random version of the user's items at each write of one, in the writer's transaction, whatever process
-- writes: a process that caches a user's vectors reads it to know whether they are still current (_VectorCache).
CREATE TABLE IF NOT EXISTS user_versions (user_id TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS items_version_ai AFTER INSERT ON items BEGIN
    INSERT INTO user_versions (user_id, version) VALUES (new.user_id, random())
    ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
END;
CREATE TRIGGER IF NOT EXISTS items_version_au AFTER UPDATE ON items BEGIN
    INSERT INTO user_versions (user_id, version) VALUES (new.user_id, random())
    ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
END;
CREATE TRIGGER IF NOT EXISTS items_version_ad AFTER DELETE ON items BEGIN
    INSERT INTO user_versions (user_id, version) VALUES (old.user_id, random())
    ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
END;
"""

# The full-text index over ``items``, one statement each (a migration runs them inside its transaction).
# FTS5's bm25() weighs each column's hits and normalises by the whole row's length, so a turn's date words count as
# words of the turn, while ``scope`` (weight 0) only filters.
_FTS_SCHEMA = (
    """CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(
    scope, text, when_text, content='items', content_rowid='rowid', tokenize='porter unicode61'
)""",
    """CREATE TRIGGER IF NOT EXISTS items_ai AFTER INSERT ON items BEGIN
    INSERT INTO items_fts (rowid, scope, text, when_text) VALUES (new.rowid, new.scope, new.text, new.when_text);
END""",
    """CREATE TRIGGER IF NOT EXISTS items_ad AFTER DELETE ON items BEGIN
    INSERT INTO items_fts (items_fts, rowid, scope, text, when_text)
    VALUES ('delete', old.rowid, old.scope, old.text, old.when_text);
END""",
    """CREATE TRIGGER IF NOT EXISTS items_au AFTER UPDATE OF text, scope, when_text ON items BEGIN
    INSERT INTO items_fts (items_fts, rowid, scope, text, when_text)
    VALUES ('delete', old.rowid, old.scope, old.text, old.when_text);
    INSERT INTO items_fts (rowid, scope, text, when_text) VALUES (new.rowid, new.scope, new.text, new.when_text);
END""",
)
_FTS_OBJECTS = (("TRIGGER", "items_ai"), ("TRIGGER", "items_ad"), ("TRIGGER", "items_au"), ("TABLE", "items_fts"))
# The rank of a hit: BM25 over the text and the date words, ``scope`` left out (weight 0).
_BM25 = "bm25(items_fts, 0.0, 1.0, 1.0)"


def match_any(terms: Sequence[str]) -> str:
    """An FTS5 query for rows holding any of ``terms``, each quoted, so nothing typed is read as FTS5 syntax."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


_UPSERT_ITEM = """
INSERT INTO items (id, user_id, kind, session_id, first_seq, last_seq, turn_id, active, ts, text, when_text, scope,
                   doc, embedding)
VALUES (:id, :user_id, :kind, :session_id, :first_seq, :last_seq, :turn_id, :active, :ts, :text, :when_text, :scope,
        :doc, :embedding)
ON CONFLICT (id) DO UPDATE SET
    session_id = excluded.session_id, first_seq = excluded.first_seq, last_seq = excluded.last_seq,
    turn_id = excluded.turn_id, active = excluded.active, ts = excluded.ts,
    text = excluded.text, when_text = excluded.when_text, scope = excluded.scope,
    doc = excluded.doc,
    embedding = COALESCE(excluded.embedding, items.embedding)
"""


def _iso(value: datetime) -> str:
    """UTC ISO-8601 with a fixed width, so text order is time order."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # isoformat pads the year to four digits, where strftime("%Y") does not on every platform.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _user_token(user_id: str) -> str:
    return "u" + hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:24]


def _scope(user_id: str, kind: MemoryKind, active: bool = True) -> str:
    # FTS5 ranks before it can join, so the filters live inside the index: a current row's ``scope`` column holds
    # one word for "this user, any kind" and one for "this user, this kind"; a retired row (a superseded insight)
    # holds neither. A query ``scope:<user-all> AND (<terms>)`` then ranks only that user's current rows, and the
    # join touches just the top hits (about 3x faster than filtering after the join, measured on 10k turns).
    token = _user_token(user_id)
    return f"{token}all {token}k{kind.value}" if active else f"{token}retired"


# turn_count - indexed_through of a session row: how far its background work is behind.
_LAG = "(json_extract(doc, '$.turn_count') - json_extract(doc, '$.indexed_through'))"
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIX_EPOCH_JULIAN_DAY = 2440587.5


def _doc(model: Any) -> str:
    payload = model.model_dump(mode="json")
    payload["schema_version"] = DOC_SCHEMA_VERSION
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _load(raw: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(raw)
    payload.pop("schema_version", None)
    return payload


def _blob(vector: Vector | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()


def _row(
    item: Turn | Chunk | SessionSummary | Insight,
    kind: MemoryKind,
    *,
    item_id: str,
    session_id: str,
    seqs: Sequence[int],
    ts: datetime,
    text: str,
    embedding: Vector | None,
    turn_id: str | None = None,
    active: bool = True,
    when_text: str | None = None,
) -> dict[str, Any]:
    """The ``items`` row of a searchable memory item."""
    return {
        "id": item_id,
        "user_id": item.user_id,
        "kind": kind.value,
        "session_id": session_id,
        "first_seq": min(seqs, default=None),
        "last_seq": max(seqs, default=None),
        "turn_id": turn_id,
        "active": int(active),
        "ts": _iso(ts),
        "text": text,
        "when_text": when_text,
        "scope": _scope(item.user_id, kind, active),
        "doc": _doc(item),
        "embedding": _blob(embedding),
    }


_BUSY_TIMEOUT_SECONDS = 5.0
_BUSY_FIRST_WAIT_SECONDS = 0.0001
# Set while a store call runs on the event loop's thread (``SqliteStore._run`` with ``inline``): there it must never
# sleep waiting for a lock, so ``_begin_write`` gives up at once with ``_WouldWait`` and the call goes to the thread.
_INLINE: ContextVar[bool] = ContextVar("sqlite_store_inline", default=False)


class _WouldWait(Exception):
    """An inline write found another process's write transaction: retry it on the store's thread."""


def _begin_write(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, waiting for another process's write transaction in small steps.

    SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries, while a write here holds the lock for well
    under a millisecond: with the local host's two processes writing one file, that rounding made a request wait
    for the background worker's writes several times longer than they took. Waits start at 0.1 ms and double.
    Inline (on the event loop's thread) it does not wait: it raises ``_WouldWait``.
    """
    conn.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + _BUSY_TIMEOUT_SECONDS
        wait = _BUSY_FIRST_WAIT_SECONDS
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                if _INLINE.get():
                    raise _WouldWait from None
            time.sleep(wait)
            wait = min(wait * 2, 0.01)
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_SECONDS * 1000)}")


_CHECKPOINT_ATTEMPTS = 20
_CHECKPOINT_PAUSE_SECONDS = 0.05


def _forgetting(conn: sqlite3.Connection, user_id: str) -> bool:
    """Whether the user's forget is pending (inside the caller's transaction)."""
    return conn.execute("SELECT 1 FROM forgets WHERE user_id = ?", (user_id,)).fetchone() is not None


def _truncate_wal(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database and truncate it to nothing, so no old page version stays in it.

    A reader of the other process may hold the WAL for a moment (the checkpoint then reports busy): try again a few
    times. Returns whether the WAL was emptied.
    """
    for _ in range(_CHECKPOINT_ATTEMPTS):
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        time.sleep(_CHECKPOINT_PAUSE_SECONDS)
    logger.warning("Store: the WAL could not be truncated after a forget (busy); the next forget or checkpoint will")
    return False


def _private_file(path: Path) -> None:
    """Create the store's folder (0700) and file (0600) readable by this user only; tighten an existing file.

    SQLite gives its WAL and shared-memory files the database file's permissions, so they follow.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store file written by an earlier version to ``STORE_SCHEMA_VERSION``, in one transaction."""
    with conn:
        _begin_write(conn)
        row = conn.execute("SELECT value FROM meta WHERE key = 'store_schema_version'").fetchone()
        version = int(row[0]) if row else 1
        if version < 2:
            # Version 1 keyed turns by seq: re-key them by turn_id.
            turns = conn.execute("SELECT rowid, user_id, session_id, turn_id FROM items WHERE kind = 'turn'").fetchall()
            conn.executemany(
                "UPDATE items SET id = ? WHERE rowid = ?",
                [(turn_doc_id(user, session, turn_id), rowid) for rowid, user, session, turn_id in turns],
            )
            if turns:
                logger.info("Store: re-keyed %d turns by turn_id (schema version 2)", len(turns))
        if version < 3:
            _index_turn_dates(conn)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('store_schema_version', ?)", (str(STORE_SCHEMA_VERSION),)
        )


def _index_turn_dates(conn: sqlite3.Connection) -> None:
    """Version 3: give every turn its date words and rebuild the full-text index with them.

    Runs inside the caller's transaction. A file created by this version already has both; an older one gets the
    column, its turns' words, then the index.
    """
    if "when_text" not in {row[1] for row in conn.execute("PRAGMA table_info(items)")}:
        conn.execute("ALTER TABLE items ADD COLUMN when_text TEXT")
    if "when_text" in {row[1] for row in conn.execute("PRAGMA table_info(items_fts)")}:
        return
    turns = conn.execute(
        "SELECT rowid, json_extract(doc, '$.timestamp') FROM items WHERE kind = 'turn' AND when_text IS NULL"
    ).fetchall()
    conn.executemany(
        "UPDATE items SET when_text = ? WHERE rowid = ?",
        [(date_words(datetime.fromisoformat(stamp)), rowid) for rowid, stamp in turns],
    )
    for kind, name in _FTS_OBJECTS:
        conn.execute(f"DROP {kind} IF EXISTS {name}")
    for statement in _FTS_SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO items_fts (items_fts) VALUES ('rebuild')")
    if turns:
        logger.info("Store: indexed the dates of %d turns in full text (schema version 3)", len(turns))


def _turn_row(turn: Turn, embedding: Vector | None) -> dict[str, Any]:
    return _row(
        turn,
        MemoryKind.TURN,
        item_id=turn_doc_id(turn.user_id, turn.session_id, turn.turn_id),
        session_id=turn.session_id,
        seqs=(turn.seq,),
        ts=turn.timestamp,
        text=turn.text(),
        embedding=embedding,
        turn_id=turn.turn_id,
        when_text=date_words(turn.timestamp),
    )


class _UserVectors(NamedTuple):
    """One user's current vectors as a matrix, with the search fields of their rows (``_hit_rows``'s, by rowid)."""

    version: int | None
    rowids: list[int]
    matrix: npt.NDArray[np.float32]
    rows: dict[int, tuple[Any, ...]]


class _VectorCache:
    """Per-user matrices of unit vectors and their rows' search fields, each with the user's version it was read at.

    The version (``user_versions``) is read before the rows, so a write that lands in between makes the entry older
    than the file, never newer: the next search reads them again. Every process that opens the file sees every
    other's writes this way (on the local host the worker embeds turns and writes summaries and insights that the
    HTTP host's searches must find). The rows' text is kept too, so that a search reads nothing but the version (some
    1.5 KB of vector and a few hundred bytes of text per item, for at most ``max_users`` users).
    """

    def __init__(self, max_users: int = 64) -> None:
        self._entries: dict[str, _UserVectors] = {}
        self._max_users = max_users

    def invalidate(self, user_id: str) -> None:
        self._entries.pop(user_id, None)

    def current(self, user_id: str, version: int | None) -> _UserVectors | None:
        """The user's cached vectors if they were read at ``version``, else None."""
        entry = self._entries.get(user_id)
        if entry is None or entry.version != version:
            return None
        self._entries[user_id] = self._entries.pop(user_id)  # most recently used last
        return entry

    def get(self, user_id: str, version: int | None, load: Callable[[], list[tuple[Any, ...]]]) -> _UserVectors:
        """The user's vectors at ``version``: cached, or read with ``load`` (rowid, vector, fields) and cached."""
        cached = self.current(user_id, version)
        if cached is not None:
            return cached
        loaded = load()
        entry = _UserVectors(
            version,
            [r[0] for r in loaded],
            (
                np.frombuffer(b"".join(r[1] for r in loaded), dtype=np.float32).reshape(len(loaded), -1)
                if loaded
                else np.zeros((0, 0), dtype=np.float32)
            ),
            {r[0]: tuple(r[2:]) for r in loaded},
        )
        self._entries.pop(user_id, None)
        self._entries[user_id] = entry
        while len(self._entries) > self._max_users:
            self._entries.pop(next(iter(self._entries)))
        return entry


def _user_version(conn: sqlite3.Connection, user_id: str) -> int | None:
    row = conn.execute("SELECT version FROM user_versions WHERE user_id = ?", (user_id,)).fetchone()
    return None if row is None else int(row[0])


class SqliteStore:
    """The ``Store`` port on one SQLite database file."""

    def __init__(self, path: Path | str, *, synchronous: Synchronous = "FULL") -> None:
        self._path = str(path)
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        # Held by whoever uses the connection: the store's thread, or the event loop's thread for an inline call.
        self._conn_lock = threading.Lock()
        self._vectors = _VectorCache()

    # -- plumbing ---------------------------------------------------------------------------------------------
    async def _run(self, fn: Callable[[sqlite3.Connection], _T], *, inline: bool = False) -> _T:
        """``fn(conn)`` on the store's thread; with ``inline``, on the caller's thread when the connection is free.

        A hop to the store's thread and back costs a request about 0.2 ms (two thread wake-ups). A short call
        (a turn's append: a few rows and one commit, well under a millisecond) skips it when nothing else holds
        the connection, and never waits for a lock there: if the other process is writing, it goes to the thread.
        """
        conn = self._conn
        if conn is None:
            raise RuntimeError("SqliteStore.open() was not called")
        if inline and self._conn_lock.acquire(blocking=False):
            token = _INLINE.set(True)
            try:
                return fn(conn)
            except _WouldWait:
                pass  # nothing was written (the transaction never began): run it where it may wait
            finally:
                _INLINE.reset(token)
                self._conn_lock.release()
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._exclusive, fn, conn)

    def _exclusive(self, fn: Callable[[sqlite3.Connection], _T], conn: sqlite3.Connection) -> _T:
        with self._conn_lock:
            return fn(conn)

    async def open(self, embedding_model: str | None, dimensions: int | None) -> None:
        """Create the file and schema if missing, and check the embedding identity."""

        def connect() -> sqlite3.Connection:
            if self._path != ":memory:":
                _private_file(Path(self._path))
            conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            # Deleted content is overwritten with zeros, in its page and in freed pages (a forget leaves no trace).
            conn.execute("PRAGMA secure_delete=ON")
            with conn:
                conn.executescript(_SCHEMA)
            _migrate(conn)  # also creates the full-text index of a new file (version 3's step)
            return conn

        if self._conn is None:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        if embedding_model is None or dimensions is None:
            return

        def check_identity(conn: sqlite3.Connection) -> None:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            stored_model, stored_dims = meta.get("embedding_model"), meta.get("embedding_dimensions")
            if stored_model is None:
                _begin_write(conn)
                conn.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("embedding_model", embedding_model), ("embedding_dimensions", str(dimensions))],
                )
                conn.execute("COMMIT")
            elif stored_model != embedding_model or stored_dims != str(dimensions):
                raise EmbeddingDimensionMismatchError(
                    f"The store at {self._path} holds embeddings of model {stored_model!r} with {stored_dims} "
                    f"dimensions, but the configured embedder is {embedding_model!r} with {dimensions}. "
                    "Use the same embedder, or a new SQLITE_PATH."
                )

        await self._run(check_identity)

    async def close(self) -> None:
        """Close the connection and stop the worker thread."""
        if self._conn is not None:
            await self._run(lambda conn: conn.close())
            self._conn = None
        self._executor.shutdown(wait=True)

    # -- sessions ---------------------------------------------------------------------------------------------
    @staticmethod
    def _session_row(record: SessionRecord) -> tuple[str, str, str, str, str]:
        return (record.user_id, record.session_id, record.status.value, _iso(record.last_activity), _doc(record))

    async def put_session(self, record: SessionRecord) -> None:
        """Insert or replace a session record."""
        row = self._session_row(record)
        await self._run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO sessions (user_id, session_id, status, last_activity, doc) VALUES (?,?,?,?,?)",
                row,
            )
        )

    async def create_session(self, record: SessionRecord) -> bool:
        """Insert a session record unless one with its id exists; False when it did. Refused while forgetting."""
        row = self._session_row(record)

        def create(conn: sqlite3.Connection) -> bool:
            with conn:
                _begin_write(conn)
                if _forgetting(conn, record.user_id):
                    raise UserForgettingError(record.user_id)
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO sessions (user_id, session_id, status, last_activity, doc) "
                    "VALUES (?,?,?,?,?)",
                    row,
                )
                return bool(cursor.rowcount)

        return await self._run(create)

    @staticmethod
    def _read_session(conn: sqlite3.Connection, user_id: str, session_id: str) -> SessionRecord | None:
        row = conn.execute(
            "SELECT doc FROM sessions WHERE user_id = ? AND session_id = ?", (user_id, session_id)
        ).fetchone()
        return None if row is None else SessionRecord.model_validate(_load(row[0]))

    @classmethod
    def _write_session(cls, conn: sqlite3.Connection, record: SessionRecord) -> None:
        conn.execute(
            "UPDATE sessions SET status = ?, last_activity = ?, doc = ? WHERE user_id = ? AND session_id = ?",
            (record.status.value, _iso(record.last_activity), _doc(record), record.user_id, record.session_id),
        )

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None:
        """One session record, or None."""
        return await self._run(lambda conn: self._read_session(conn, user_id, session_id))

    async def update_session(self, user_id: str, session_id: str, change: RecordChange) -> RecordUpdate:
        """Apply a pure transition to the current record, in one transaction."""

        def update(conn: sqlite3.Connection) -> RecordUpdate:
            with conn:
                _begin_write(conn)
                record = self._read_session(conn, user_id, session_id)
                changed = change(record) if record is not None else None
                if changed is None:
                    return RecordUpdate(record=record, changed=False)
                self._write_session(conn, changed)
                return RecordUpdate(record=changed, changed=True)

        return await self._run(update)

    async def append_turn(self, user_id: str, session_id: str, turn: TurnInput, now: datetime) -> AppendOutcome:
        """Store the turn with the next seq and count it in the session record, in one transaction."""

        def append(conn: sqlite3.Connection) -> AppendOutcome:
            with conn:
                _begin_write(conn)
                if _forgetting(conn, user_id):
                    raise UserForgettingError(user_id)
                record = self._read_session(conn, user_id, session_id)
                if record is None:
                    raise SessionNotFoundError(user_id, session_id)
                existing = self._read_turn(conn, user_id, session_id, turn.turn_id)
                if existing is not None:
                    rules.ensure_same_turn(existing, turn)
                    return AppendOutcome(turn=existing, duplicate=True, record=record)
                record, stored = rules.append(record, turn, now)
                conn.execute(_UPSERT_ITEM, _turn_row(stored, None))
                self._write_session(conn, record)
                return AppendOutcome(turn=stored, duplicate=False, record=record)

        return await self._run(append, inline=True)

    async def list_sessions(
        self, user_id: str, status: SessionStatus | None = None, limit: int | None = 100
    ) -> list[SessionRecord]:
        """The user's sessions, most recently active first (``limit`` None: every one)."""
        sql = "SELECT doc FROM sessions WHERE user_id = ?"
        params: list[Any] = [user_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status.value)
        sql += " ORDER BY last_activity DESC LIMIT ?"
        params.append(-1 if limit is None else limit)  # SQLite: a negative LIMIT is no limit
        return [SessionRecord.model_validate(d) for d in await self._docs(sql, params)]

    async def scan_sessions(
        self,
        status: SessionStatus,
        *,
        idle_before: datetime | None = None,
        lagging_by: int | None = None,
        unreflected: bool = False,
        limit: int = 100,
    ) -> list[SessionRecord]:
        """Sessions of every user with ``status``, least recently active first."""
        sql = "SELECT doc FROM sessions WHERE status = ?"
        params: list[Any] = [status.value]
        if idle_before is not None:
            sql += " AND last_activity < ?"
            params.append(_iso(idle_before))
        if lagging_by is not None:
            sql += f" AND {_LAG} >= ?"
            params.append(lagging_by)
        if unreflected:
            sql += " AND json_extract(doc, '$.reflected_at') IS NULL"
        sql += " ORDER BY last_activity LIMIT ?"
        params.append(limit)
        return [SessionRecord.model_validate(d) for d in await self._docs(sql, params)]

    async def recent_sessions(self, limit: int = 100) -> list[SessionRecord]:
        """Sessions of every user, whatever their status, most recently active first."""
        sql = "SELECT doc FROM sessions ORDER BY last_activity DESC LIMIT ?"
        return [SessionRecord.model_validate(d) for d in await self._docs(sql, (limit,))]

    async def session_figures(self, status: SessionStatus, lagging_by: int) -> SessionFigures:
        """Count and activity of every user's sessions with ``status``."""
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT COUNT(*), COALESCE(SUM({_LAG} >= ?), 0), MIN(last_activity), "  # noqa: S608 - constant SQL
                "AVG(julianday(last_activity)) FROM sessions WHERE status = ?",
                (lagging_by, status.value),
            ).fetchone()
        )
        count, lagging, oldest, mean_day = row
        mean = _UNIX_EPOCH + timedelta(days=mean_day - _UNIX_EPOCH_JULIAN_DAY) if mean_day is not None else None
        return SessionFigures(
            count=count,
            lagging=lagging,
            oldest_activity=datetime.fromisoformat(oldest) if oldest else None,
            mean_activity=mean,
        )

    async def claim_cleanup(self, now: datetime, interval_seconds: float) -> bool:
        """True, and remember ``now``, when no cleanup was claimed in the last ``interval_seconds``."""

        def claim(conn: sqlite3.Connection) -> bool:
            with conn:
                _begin_write(conn)
                row = conn.execute("SELECT value FROM meta WHERE key = 'last_cleanup'").fetchone()
                if row is not None and (now - datetime.fromisoformat(row[0])).total_seconds() < interval_seconds:
                    return False
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_cleanup', ?)", (_iso(now),))
                return True

        return await self._run(claim)

    # -- items ------------------------------------------------------------------------------------------------
    @classmethod
    def _writable(cls, conn: sqlite3.Connection, user_ids: set[str], guard: SessionGuard | None) -> bool:
        """Whether the users' items may be written now (inside the write's transaction).

        No forget of theirs is pending, and the guarded session (if any) is still the one the work found.
        """
        if any(_forgetting(conn, user_id) for user_id in user_ids):
            return False
        return guard is None or guard.holds(cls._read_session(conn, guard.user_id, guard.session_id))

    async def _upsert(self, rows: list[dict[str, Any]], guard: SessionGuard | None = None) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            with conn:
                _begin_write(conn)
                if not self._writable(conn, {row["user_id"] for row in rows}, guard):
                    return False
                conn.executemany(_UPSERT_ITEM, rows)
                return True

        if not rows:
            return True
        return await self._run(write)

    async def put_turns(self, turns: Sequence[Turn], embeddings: Sequence[Vector | None] | None = None) -> None:
        """Upsert turns by (user, session, seq); an embedding (when given) is stored with its turn."""
        vectors = list(embeddings) if embeddings is not None else [None] * len(turns)
        await self._upsert([_turn_row(t, v) for t, v in zip(turns, vectors, strict=True)])

    async def _docs(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [_load(r[0]) for r in rows]

    async def get_turns(
        self, user_id: str, session_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[Turn]:
        """The session's turns with seq > after_seq, in seq order."""
        docs = await self._docs(
            "SELECT doc FROM items WHERE user_id = ? AND kind = 'turn' AND session_id = ? AND first_seq > ? "
            "ORDER BY first_seq LIMIT ?",
            (user_id, session_id, after_seq, -1 if limit is None else limit),
        )
        return [Turn.model_validate(d) for d in docs]

    @staticmethod
    def _read_turn(conn: sqlite3.Connection, user_id: str, session_id: str, turn_id: str) -> Turn | None:
        row = conn.execute(
            "SELECT doc FROM items WHERE user_id = ? AND session_id = ? AND turn_id = ? AND kind = 'turn'",
            (user_id, session_id, turn_id),
        ).fetchone()
        return None if row is None else Turn.model_validate(_load(row[0]))

    async def get_turn(self, user_id: str, session_id: str, turn_id: str) -> Turn | None:
        """The session's turn stored under ``turn_id``, or None."""
        return await self._run(lambda conn: self._read_turn(conn, user_id, session_id, turn_id))

    async def set_turn_vectors(
        self, turns: Sequence[Turn], vectors: Sequence[Vector], *, guard: SessionGuard | None = None
    ) -> int:
        """Add each stored turn's vector in place (its text and the full-text index are not touched)."""
        rows = [
            (_blob(v), turn_doc_id(t.user_id, t.session_id, t.turn_id), t.user_id)
            for t, v in zip(turns, vectors, strict=True)
        ]

        def write(conn: sqlite3.Connection) -> int:
            with conn:
                _begin_write(conn)
                if not self._writable(conn, {t.user_id for t in turns}, guard):
                    return 0
                cursor = conn.executemany(
                    "UPDATE items SET embedding = ? WHERE id = ? AND user_id = ? AND kind = 'turn'", rows
                )
                return int(cursor.rowcount)

        if not rows:
            return 0
        return await self._run(write)

    async def put_chunk(
        self, chunk: Chunk, embedding: Vector | None = None, *, guard: SessionGuard | None = None
    ) -> bool:
        """Upsert a chunk by (user, session, index); with a guard, only while that session exists."""
        row = _row(
            chunk,
            MemoryKind.CHUNK,
            item_id=chunk.id,
            session_id=chunk.session_id,
            seqs=(chunk.first_seq, chunk.last_seq),
            ts=chunk.timestamp,
            text=chunk.summary,
            embedding=embedding,
        )
        return await self._upsert([row], guard)

    async def get_chunks(self, user_id: str, session_id: str) -> list[Chunk]:
        """The session's chunks in order."""
        docs = await self._docs(
            "SELECT doc FROM items WHERE user_id = ? AND kind = 'chunk' AND session_id = ? ORDER BY first_seq",
            (user_id, session_id),
        )
        return [Chunk.model_validate(d) for d in docs]

    async def put_summary(
        self, summary: SessionSummary, embedding: Vector | None = None, *, guard: SessionGuard | None = None
    ) -> bool:
        """Upsert the one summary of a session; with a guard, only while that session exists."""
        row = _row(
            summary,
            MemoryKind.SUMMARY,
            item_id=summary.id,
            session_id=summary.session_id,
            seqs=(summary.first_seq, summary.last_seq),
            ts=summary.created_at,
            text=summary.summary,
            embedding=embedding,
        )
        return await self._upsert([row], guard)

    async def get_summaries(self, user_id: str, limit: int = 5) -> list[SessionSummary]:
        """The user's session summaries, newest first."""
        docs = await self._docs(
            "SELECT doc FROM items WHERE user_id = ? AND kind = 'summary' ORDER BY ts DESC, id LIMIT ?",
            (user_id, limit),
        )
        return [SessionSummary.model_validate(d) for d in docs]

    async def put_insights(
        self,
        insights: Sequence[Insight],
        embeddings: Sequence[Vector | None] | None = None,
        *,
        guard: SessionGuard | None = None,
    ) -> bool:
        """Upsert insights by id; with a guard, only while the session they come from exists."""
        vectors = list(embeddings) if embeddings is not None else [None] * len(insights)
        rows = [
            _row(
                i,
                MemoryKind.INSIGHT,
                item_id=i.id,
                session_id=i.source_session_id,
                seqs=i.source_turns,
                ts=i.updated_at,
                text=i.text,
                embedding=v,
                active=i.status == "active",
            )
            for i, v in zip(insights, vectors, strict=True)
        ]
        return await self._upsert(rows, guard)

    async def get_insights(
        self, user_id: str, include_superseded: bool = False, limit: int | None = 100
    ) -> list[Insight]:
        """The user's insights, most recently updated first (``limit`` None: every one)."""
        docs = await self._docs(
            "SELECT doc FROM items WHERE user_id = ? AND kind = 'insight' AND (active = 1 OR ?) "
            "ORDER BY ts DESC, id LIMIT ?",
            (user_id, int(include_superseded), -1 if limit is None else limit),
        )
        return [Insight.model_validate(d) for d in docs]

    # -- search -----------------------------------------------------------------------------------------------
    async def search_text(
        self, user_id: str, query: str, kinds: Sequence[MemoryKind], limit: int, where: ItemFilter | None = None
    ) -> list[SearchHit]:
        """BM25 over FTS5 (porter stemming), scoped to the user; superseded insights are left out unless ``as_of``."""
        terms = query_terms(query)
        if not terms or not kinds or limit <= 0:
            return []
        match = f"{_scope_match(user_id, kinds, where)} AND {{text when_text}}:({match_any(terms)})"
        conditions, params = _filter_sql(where)

        def rank(conn: sqlite3.Connection) -> list[SearchHit]:
            if conditions:
                # The filters join the items before the LIMIT, so that ``limit`` matching hits come back.
                ranked = conn.execute(
                    f"SELECT items_fts.rowid, {_BM25} FROM items_fts "  # noqa: S608
                    "JOIN items AS i ON i.rowid = items_fts.rowid "
                    f"WHERE items_fts MATCH ? AND i.user_id = ? AND {conditions} "
                    f"ORDER BY {_BM25} LIMIT ?",
                    (match, user_id, *params, limit),
                ).fetchall()
            else:
                ranked = conn.execute(
                    f"SELECT rowid, {_BM25} FROM items_fts WHERE items_fts MATCH ? "  # noqa: S608
                    f"ORDER BY {_BM25} LIMIT ?",
                    (match, limit),
                ).fetchall()
            if not ranked:
                return []
            by_rowid = _hit_rows(conn, [r[0] for r in ranked], "i.user_id = ?", [user_id])
            return [_hit(by_rowid[rowid], -float(rank)) for rowid, rank in ranked if rowid in by_rowid]

        return await self._run(rank)

    async def search_vector(
        self, user_id: str, vector: Vector, kinds: Sequence[MemoryKind], limit: int, where: ItemFilter | None = None
    ) -> list[SearchHit]:
        """Cosine similarity against the user's stored vectors (all unit length), scoped to the user."""
        if not kinds or limit <= 0:
            return []
        wanted = {k.value for k in kinds}
        conditions, params = _filter_sql(where)
        retired = _wants_retired(kinds, where)

        def load(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                f"SELECT i.rowid, i.embedding, {_HIT_FIELDS} FROM items AS i "  # noqa: S608
                "WHERE i.user_id = ? AND i.active = 1 AND i.embedding IS NOT NULL",
                (user_id,),
            ).fetchall()

        def search(conn: sqlite3.Connection) -> list[SearchHit]:
            version = _user_version(conn, user_id)
            cached = self._vectors.get(user_id, version, lambda: load(conn))
            rowids, matrix = cached.rowids, cached.matrix
            if retired:  # superseded insights are not cached: the few of them are read for an as_of search
                rows = conn.execute(
                    "SELECT rowid, embedding FROM items WHERE user_id = ? AND kind = 'insight' AND active = 0 "
                    "AND embedding IS NOT NULL",
                    (user_id,),
                ).fetchall()
                rowids, matrix = _stack(rowids, matrix, rows)
            if not rowids:
                return []
            query = np.asarray(vector, dtype=np.float32)
            if matrix.shape[1] != query.shape[0]:
                raise EmbeddingDimensionMismatchError(
                    f"Query vector has {query.shape[0]} dimensions; stored vectors have {matrix.shape[1]}"
                )
            scores = matrix @ query
            # Over-fetch so that filtering by kind (and by ``where``) still leaves ``limit`` hits.
            narrowed = len(wanted) < len(MemoryKind) or bool(conditions)
            take = min(len(rowids), limit * 4 if narrowed else limit)
            while True:
                top = np.argpartition(-scores, take - 1)[:take] if take < len(rowids) else np.arange(len(rowids))
                top = top[np.argsort(-scores[top], kind="stable")]
                picked = [rowids[i] for i in top]
                # Without filters the cached rows are those to return (current: read at the user's version).
                by_rowid = _hit_rows(conn, picked, conditions, params) if conditions else cached.rows
                hits = [
                    _hit(by_rowid[rid], float(scores[i]))
                    for rid, i in zip(picked, top, strict=True)
                    if rid in by_rowid and by_rowid[rid][1] in wanted
                ]
                if len(hits) >= limit or take >= len(rowids):
                    return hits[:limit]
                take = min(len(rowids), take * 4)

        # On the store's thread, even when the user's vectors are cached: run on the event loop's thread (two
        # thread wake-ups fewer) it took about 0.1 ms off one client's query, but with 20 clients searching at once
        # it held the loop long enough to add 0.5-0.7 ms to /health's p50 beside them (three rounds of each).
        return await self._run(search)

    # -- users ------------------------------------------------------------------------------------------------
    async def begin_forget(self, user_id: str, now: datetime) -> datetime:
        """Record the user's pending forget (kept if one is pending already); returns when it began."""

        def begin(conn: sqlite3.Connection) -> datetime:
            with conn:
                _begin_write(conn)
                conn.execute("INSERT OR IGNORE INTO forgets (user_id, began_at) VALUES (?, ?)", (user_id, _iso(now)))
                row = conn.execute("SELECT began_at FROM forgets WHERE user_id = ?", (user_id,)).fetchone()
            return datetime.fromisoformat(row[0])

        return await self._run(begin)

    async def finish_forget(self, user_id: str) -> None:
        """Remove the user's pending forget (its row is zeroed, and the WAL truncated)."""

        def finish(conn: sqlite3.Connection) -> None:
            with conn:
                _begin_write(conn)
                conn.execute("DELETE FROM forgets WHERE user_id = ?", (user_id,))
            _truncate_wal(conn)

        await self._run(finish)

    async def pending_forgets(self, limit: int = 100) -> list[PendingForget]:
        """Forgets that began and are not complete, oldest first."""
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT user_id, began_at FROM forgets ORDER BY began_at, user_id LIMIT ?", (limit,)
            ).fetchall()
        )
        return [PendingForget(user_id=user_id, began_at=datetime.fromisoformat(began)) for user_id, began in rows]

    async def delete_user(self, user_id: str) -> UserDeletion:
        """Remove everything stored about the user, in one transaction, and leave no copy of it in the file.

        The rows are zeroed as they are deleted (``secure_delete``); the full-text index is then merged into one
        segment (``optimize``), so no segment keeps the deleted terms or their delete markers; and the WAL, which
        holds earlier versions of the pages, is checkpointed and truncated.
        """

        def delete(conn: sqlite3.Connection) -> UserDeletion:
            with conn:
                _begin_write(conn)
                counts = dict(
                    conn.execute("SELECT kind, COUNT(*) FROM items WHERE user_id = ? GROUP BY kind", (user_id,))
                )
                sessions = conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount
                conn.execute("DELETE FROM items WHERE user_id = ?", (user_id,))
                conn.execute("DELETE FROM user_versions WHERE user_id = ?", (user_id,))  # after its triggers
            if counts:
                with conn:
                    _begin_write(conn)
                    conn.execute("INSERT INTO items_fts (items_fts) VALUES ('optimize')")
            if counts or sessions:
                _truncate_wal(conn)
            return UserDeletion(
                sessions=sessions,
                turns=counts.get("turn", 0),
                chunks=counts.get("chunk", 0),
                summaries=counts.get("summary", 0),
                insights=counts.get("insight", 0),
            )

        result = await self._run(delete)
        self._vectors.invalidate(user_id)
        return result

    async def export_user(self, user_id: str) -> UserExport:
        """Everything stored about the user (without vectors)."""

        def read(conn: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            sessions = conn.execute(
                "SELECT doc FROM sessions WHERE user_id = ? ORDER BY last_activity", (user_id,)
            ).fetchall()
            items = conn.execute(
                "SELECT kind, doc FROM items WHERE user_id = ? ORDER BY kind, session_id, first_seq, ts", (user_id,)
            ).fetchall()
            return sessions, items

        sessions, items = await self._run(read)
        export = UserExport(user_id=user_id, sessions=[SessionRecord.model_validate(_load(r[0])) for r in sessions])
        parsers: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
            "turn": (Turn.model_validate, export.turns),
            "chunk": (Chunk.model_validate, export.chunks),
            "summary": (SessionSummary.model_validate, export.summaries),
            "insight": (Insight.model_validate, export.insights),
        }
        for kind, raw in items:
            parse, target = parsers[kind]
            target.append(parse(_load(raw)))
        return export


def _wants_retired(kinds: Sequence[MemoryKind], where: ItemFilter | None) -> bool:
    """Whether a search looks at superseded insights too (what was believed ``as_of`` a time)."""
    return where is not None and where.as_of is not None and MemoryKind.INSIGHT in kinds


def _scope_match(user_id: str, kinds: Sequence[MemoryKind], where: ItemFilter | None) -> str:
    """The FTS5 condition on ``scope`` that keeps the user's current items of ``kinds`` (and retired ones if asked)."""
    token = _user_token(user_id)
    if set(kinds) == set(MemoryKind):
        words = [f"{token}all"]
    else:
        words = [f"{token}k{k.value}" for k in kinds]
    if _wants_retired(kinds, where):
        words.append(f"{token}retired")
    return "(" + " OR ".join(f'scope:"{w}"' for w in words) + ")"


# An insight's validity from its stored document; julianday() reads ISO-8601 with any offset, so times compare as
# instants whatever offset they were written with.
_VALID_AS_OF = (
    "julianday(json_extract(i.doc, '$.valid_from')) <= julianday(?) AND (json_extract(i.doc, '$.valid_to') IS NULL "
    "OR julianday(json_extract(i.doc, '$.valid_to')) > julianday(?))"
)


def _filter_sql(where: ItemFilter | None) -> tuple[str, list[Any]]:
    """The SQL conditions on ``items AS i`` that ``where`` asks for, and their parameters ("" when none)."""
    if where is None or not where.restricts:
        return "", []
    conditions: list[str] = []
    params: list[Any] = []
    if where.session_ids is not None:
        conditions.append(f"i.session_id IN ({','.join('?' * len(where.session_ids))})")
        params += where.session_ids
    if where.since is not None:
        conditions.append("i.ts >= ?")
        params.append(_iso(where.since))
    if where.until is not None:
        conditions.append("i.ts < ?")
        params.append(_iso(where.until))
    if where.as_of is not None:
        at = _iso(where.as_of)
        conditions.append(f"(CASE WHEN i.kind = 'insight' THEN {_VALID_AS_OF} ELSE i.active = 1 AND i.ts <= ? END)")
        params += [at, at, at]
    else:
        conditions.append("i.active = 1")
    return " AND ".join(conditions), params


# The fields of a row that make a search hit (``_hit``).
_HIT_FIELDS = "i.id, i.kind, i.text, i.session_id, i.first_seq, i.last_seq, i.ts"


def _hit_rows(
    conn: sqlite3.Connection, rowids: Sequence[int], conditions: str, params: Sequence[Any]
) -> dict[int, tuple[Any, ...]]:
    """The search fields of the rows among ``rowids`` that meet ``conditions``, by rowid."""
    marks = ",".join("?" * len(rowids))
    rows = conn.execute(
        f"SELECT i.rowid, {_HIT_FIELDS} FROM items AS i "  # noqa: S608
        f"WHERE i.rowid IN ({marks})" + (f" AND {conditions}" if conditions else ""),
        [*rowids, *params],
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _stack(
    rowids: list[int], matrix: npt.NDArray[np.float32], rows: list[tuple[int, bytes]]
) -> tuple[list[int], npt.NDArray[np.float32]]:
    """The cached vectors with more rows appended."""
    if not rows:
        return rowids, matrix
    extra = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    return [*rowids, *(r[0] for r in rows)], (np.vstack([matrix, extra]) if len(rowids) else extra)


def _hit(row: Sequence[Any], score: float) -> SearchHit:
    item_id, kind, text, session_id, first_seq, last_seq, ts = row
    seqs: tuple[int, ...] = ()
    if first_seq is not None:
        seqs = (first_seq,) if last_seq in (None, first_seq) else (first_seq, last_seq)
    return SearchHit(
        kind=MemoryKind(kind),
        id=item_id,
        text=text,
        score=score,
        session_id=session_id,
        seqs=seqs,
        timestamp=datetime.fromisoformat(ts),
    )
