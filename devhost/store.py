"""SQLite storage for everything durable: instances, histories, queued messages, work items, entities, timers.

One database file per task hub under the state directory, in WAL mode with `synchronous=FULL`, so a commit is on
disk before anything that depends on it is acknowledged. Every state change that must be atomic is one
`transaction()`. The connection is used from the event loop's thread only.

An open `Store` holds the state directory's lock (an flock on `devhost.lock`): one process at a time runs the durable
back end of a state directory (the durable worker, or the host with `--single-process`). A durable worker waits a
little for it (`lock_wait`), as the worker of a host that was just killed may still be exiting.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devhost.history import Event

logger = logging.getLogger(__name__)

LOCK_POLL_SECONDS = 0.05
SCHEMA_VERSION = 2  # 2: activities.visible_at (--durable-latency)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per orchestration instance (its current execution). A state directory written by an older devhost also
-- has parent_instance_id, parent_execution_id and parent_task_id (sub-orchestrations, no longer emulated): unused.
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    input TEXT,              -- the input as the status API shows it: JSON text of a JSON value (NULL: none)
    output TEXT,             -- JSON text of the output (NULL: none)
    custom_status TEXT,      -- JSON text (NULL: none)
    created_time REAL NOT NULL,
    last_updated_time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_created ON instances (created_time);
-- The history of each instance's current execution, in order.
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;
-- Messages an orchestration has not consumed yet (ExecutionStarted, completions, events, timers, terminate...).
-- A timer is a TimerFired message that becomes visible at its fire time.
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,       -- NULL: for whichever execution is current
    visible_at REAL NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox (instance_id, id);
CREATE INDEX IF NOT EXISTS inbox_visible ON inbox (visible_at);
-- Activities scheduled and not yet completed (run again after a crash: at-least-once). An activity does not start
-- before visible_at (0: at once; later with --durable-latency, as its work item rides a queue on Azure).
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    visible_at REAL NOT NULL DEFAULT 0
);
-- Entity operations (signals and calls) not yet processed, in arrival order. The sender is parent_instance_id
-- (NULL: a client).
CREATE TABLE IF NOT EXISTS entity_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_id TEXT NOT NULL,  -- scheduler id: @name@key
    operation TEXT NOT NULL,
    input TEXT,               -- the batch's `input`: JSON text of the JSON text (twice encoded), or NULL
    is_signal INTEGER NOT NULL,
    request_id TEXT,
    parent_instance_id TEXT,
    parent_execution_id TEXT,
    visible_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entity_messages_entity ON entity_messages (entity_id, id);
CREATE INDEX IF NOT EXISTS entity_messages_visible ON entity_messages (visible_at);
CREATE TABLE IF NOT EXISTS entities (
    entity_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,      -- JSON text
    last_modified REAL NOT NULL
);
-- Timer triggers: when each last fired and when it is due next.
CREATE TABLE IF NOT EXISTS timer_triggers (
    function_name TEXT PRIMARY KEY,
    last_fire REAL,
    next_fire REAL,
    last_updated REAL NOT NULL
);
"""

TERMINAL_STATUSES = ("Completed", "Failed", "Terminated", "Canceled")
ACTIVE_STATUSES = ("Pending", "Running", "ContinuedAsNew", "Suspended")


class StateDirInUseError(RuntimeError):
    """Another devhost process holds the state directory."""


@dataclass
class Instance:
    """One orchestration instance row."""

    instance_id: str
    execution_id: str
    name: str
    version: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: float
    last_updated_time: float


@dataclass
class EntityRow:
    """One existing entity, as the instance query lists it (its instance id is its scheduler id, `@name@key`)."""

    entity_id: str
    name: str
    key: str
    state: str
    last_modified: float


@dataclass
class InboxMessage:
    """A message waiting for an orchestration episode."""

    id: int
    instance_id: str
    execution_id: str | None
    visible_at: float
    event: Event


@dataclass
class ActivityItem:
    """An activity waiting to run (or running)."""

    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None
    visible_at: float = 0.0


@dataclass
class EntityMessage:
    """An entity operation waiting to run."""

    id: int
    entity_id: str
    operation: str
    input: str | None
    is_signal: bool
    request_id: str | None = None
    parent_instance_id: str | None = None
    parent_execution_id: str | None = None


def database_path(state_dir: Path, hub_name: str) -> Path:
    """One file per task hub, as each hub is a separate store on Azure."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", hub_name) or "default"
    return state_dir / f"durable-{safe}.sqlite3"


def lock_state_dir(state_dir: Path, wait: float = 0.0) -> IO[str]:
    """Take the state directory's lock (`devhost.lock`, an flock held until the returned file is closed).

    Args:
        state_dir: the state directory (created if missing).
        wait: seconds to wait for another process to release the lock, e.g. a durable worker whose host was just
            killed and which is exiting (0: fail at once).

    Raises:
        StateDirInUseError: another process still holds the lock after `wait` seconds.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_file = open(create_private(state_dir / "devhost.lock"), "a+")  # held for the store's lifetime
    deadline = time.monotonic() + wait
    announce_at = time.monotonic() + 1.0
    while True:
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock_file
        except BlockingIOError as error:
            now = time.monotonic()
            if now >= deadline:
                lock_file.close()
                raise StateDirInUseError(
                    f"The state directory {state_dir} is used by another devhost process"
                ) from error
            if announce_at and now >= announce_at:
                logger.info("Waiting up to %.0fs for another devhost process to release %s", deadline - now, state_dir)
                announce_at = 0.0
            time.sleep(LOCK_POLL_SECONDS)


class Store:
    """The SQLite database of one task hub.

    Args:
        state_dir: the state directory; its lock is held while the store is open.
        hub_name: the task hub (one database file each).
        lock_wait: seconds to wait for another process to release the state directory (0: fail at once).
    """

    def __init__(self, state_dir: Path, hub_name: str, lock_wait: float = 0.0) -> None:
        self._lock_file = lock_state_dir(state_dir, lock_wait)
        # Created 0600 before SQLite opens it: its WAL and shared-memory files take the database file's mode.
        self.path = create_private(database_path(state_dir, hub_name))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # A purged history or entity leaves no bytes behind: deleted rows are zeroed (see ``forget_freed``).
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        with self.transaction() as db:
            _migrate(db)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('hub_name', ?)", (hub_name,))

    def close(self) -> None:
        """Close the database and release the state directory."""
        self._db.close()
        fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
        self._lock_file.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit of work: committed (and on disk) when the block exits without error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def forget_freed(self) -> None:
        """Drop the WAL's copies of pages written before the last deletes (a checkpoint that truncates the WAL).

        ``secure_delete`` zeroes deleted rows in the database, but the WAL still holds the pages as they were until
        it is checkpointed and reset. Best effort: while a transaction is open the WAL stays until the next time.
        """
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as error:
            logger.debug("WAL not truncated now: %s", error)

    # ------------------------------------------------------------------ instances

    def get_instance(self, instance_id: str) -> Instance | None:
        """The instance row, or None."""
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?"  # noqa: S608 - constant columns
        row = self._db.execute(sql, (instance_id,))
        found = row.fetchone()
        return Instance(*found) if found else None

    def query_instances(
        self,
        *,
        created_from: float | None = None,
        created_to: float | None = None,
        statuses: list[str] | None = None,
        prefix: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Instance]:
        """Instances matching every given filter, oldest first."""
        clauses, args = _instance_filter(created_from, created_to, statuses, prefix)
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances"  # noqa: S608 - constant columns, bound arguments
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_time, instance_id LIMIT ? OFFSET ?"
        args += [limit if limit is not None else -1, offset]
        return [Instance(*row) for row in self._db.execute(sql, args)]

    def query_page(
        self,
        *,
        created_from: float | None = None,
        created_to: float | None = None,
        statuses: list[str] | None = None,
        prefix: str | None = None,
        after: str | None = None,
        limit: int,
    ) -> list[Instance | EntityRow]:
        """One page of the instance query: orchestrations and entities matching every filter, by id, after `after`.

        As on the Azure Storage back end, where an entity is a row of the Instances table: entities are listed
        under their scheduler id (`@name@key`) with the status Running; `created_from`/`created_to` apply to their
        last operation's time. Ordered by id (the table's key order), so a page starts after the last id of the one
        before whatever was purged meanwhile.
        """
        clauses, args = _instance_filter(created_from, created_to, statuses, prefix)
        if after is not None:
            clauses.append("instance_id > ?")
            args.append(after)
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances"  # noqa: S608 - constant columns, bound arguments
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY instance_id LIMIT ?"
        rows: list[Instance | EntityRow] = [Instance(*row) for row in self._db.execute(sql, [*args, limit])]
        if statuses is None or "Running" in statuses:
            entity_clauses: list[str] = []
            entity_args: list[Any] = []
            for clause, value in (
                ("last_modified >= ?", created_from),
                ("last_modified <= ?", created_to),
                ("entity_id > ?", after),
            ):
                if value is not None:
                    entity_clauses.append(clause)
                    entity_args.append(value)
            if prefix:
                entity_clauses.append("substr(entity_id, 1, ?) = ?")
                entity_args.extend([len(prefix), prefix])
            entity_sql = "SELECT entity_id, name, key, state, last_modified FROM entities"
            if entity_clauses:
                entity_sql += " WHERE " + " AND ".join(entity_clauses)
            entity_sql += " ORDER BY entity_id LIMIT ?"
            rows += [EntityRow(*row) for row in self._db.execute(entity_sql, [*entity_args, limit])]
        rows.sort(key=lambda row: row.instance_id if isinstance(row, Instance) else row.entity_id)
        return rows[:limit]

    def put_instance(
        self,
        instance_id: str,
        name: str,
        status: str,
        *,
        created_time: float,
        last_updated_time: float | None = None,
        input_text: str | None = None,
        output_text: str | None = None,
    ) -> None:
        """Write an instance row in the given state, without history or messages (it replaces one with that id).

        For tests and tools that need a task hub in a given state (an old finished instance, a running one): the
        back end runs nothing for such a row until a message arrives for it (a terminate, say).
        """
        with self.transaction() as db:
            Store.delete_instance_data(db, instance_id)
            db.execute(
                "INSERT OR REPLACE INTO instances (instance_id, execution_id, name, version, status, input, output, "
                "custom_status, created_time, last_updated_time) VALUES (?, ?, ?, '', ?, ?, ?, NULL, ?, ?)",
                (
                    instance_id,
                    uuid.uuid4().hex,
                    name,
                    status,
                    input_text,
                    output_text,
                    created_time,
                    created_time if last_updated_time is None else last_updated_time,
                ),
            )

    def queued_work(self) -> int:
        """How many orchestration messages, activities and entity operations are queued (visible or not)."""
        row = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM inbox) + (SELECT COUNT(*) FROM activities) "
            "+ (SELECT COUNT(*) FROM entity_messages)"
        ).fetchone()
        return int(row[0])

    def get_entity(self, entity_id: str) -> EntityRow | None:
        """One existing entity by its scheduler id, or None."""
        row = self._db.execute(
            "SELECT entity_id, name, key, state, last_modified FROM entities WHERE entity_id = ?", (entity_id,)
        ).fetchone()
        return EntityRow(*row) if row else None

    def load_history(self, instance_id: str) -> list[Event]:
        """The history of the instance's current execution, in order."""
        rows = self._db.execute("SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,))
        return [json.loads(row[0]) for row in rows]

    @staticmethod
    def append_history(db: sqlite3.Connection, instance_id: str, start_seq: int, events: list[Event]) -> None:
        """Append events after `start_seq - 1` (inside a transaction)."""
        db.executemany(
            "INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)",
            [(instance_id, start_seq + i, json.dumps(event)) for i, event in enumerate(events)],
        )

    @staticmethod
    def delete_instance_data(db: sqlite3.Connection, instance_id: str) -> None:
        """Remove an instance's history, queued messages and pending activities (not the instance row)."""
        db.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))
        db.execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))
        db.execute("DELETE FROM activities WHERE instance_id = ?", (instance_id,))

    # ------------------------------------------------------------------ inbox

    @staticmethod
    def enqueue(
        db: sqlite3.Connection, instance_id: str, execution_id: str | None, event: Event, visible_at: float
    ) -> int:
        """Queue a message for an orchestration (inside a transaction); returns its id."""
        cursor = db.execute(
            "INSERT INTO inbox (instance_id, execution_id, visible_at, event) VALUES (?, ?, ?, ?)",
            (instance_id, execution_id, visible_at, json.dumps(event)),
        )
        return int(cursor.lastrowid or 0)

    def visible_messages(self, instance_id: str, now: float, *, by_visibility: bool = False) -> list[InboxMessage]:
        """The instance's messages that are visible now, in arrival order.

        Args:
            instance_id: the orchestration instance.
            now: epoch seconds; messages with a later `visible_at` are not returned.
            by_visibility: order by when each message became visible, then by when it was sent (the arrival order
                when messages ride queues with a latency); False: by when they were sent.
        """
        sql = _VISIBLE_MESSAGES_BY_VISIBILITY if by_visibility else _VISIBLE_MESSAGES
        rows = self._db.execute(sql, (instance_id, now))
        return [InboxMessage(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def instances_with_visible_messages(self, now: float) -> list[str]:
        """Instances that have at least one message visible now."""
        rows = self._db.execute("SELECT DISTINCT instance_id FROM inbox WHERE visible_at <= ?", (now,))
        return [row[0] for row in rows]

    def next_invisible_times(self, now: float) -> list[tuple[float, str]]:
        """(visible_at, instance id) of every future orchestration message (durable timers)."""
        rows = self._db.execute("SELECT visible_at, instance_id FROM inbox WHERE visible_at > ?", (now,))
        return [(row[0], row[1]) for row in rows]

    # ------------------------------------------------------------------ activities

    def pending_activities(self) -> list[ActivityItem]:
        """Every activity not yet completed."""
        rows = self._db.execute(f"SELECT {_ACTIVITY_COLUMNS} FROM activities")  # noqa: S608 - constant columns
        return [ActivityItem(*row) for row in rows]

    def get_activity(self, activity_id: int) -> ActivityItem | None:
        """One activity not yet completed, or None when it completed or was dropped (terminate, purge)."""
        sql = f"SELECT {_ACTIVITY_COLUMNS} FROM activities WHERE id = ?"  # noqa: S608 - constant columns
        found = self._db.execute(sql, (activity_id,)).fetchone()
        return ActivityItem(*found) if found else None

    # ------------------------------------------------------------------ entities

    def entity_batch(
        self, entity_id: str, now: float, limit: int, *, by_visibility: bool = False
    ) -> list[EntityMessage]:
        """The entity's oldest visible operations, in arrival order (see `visible_messages` for `by_visibility`)."""
        sql = _ENTITY_BATCH_BY_VISIBILITY if by_visibility else _ENTITY_BATCH
        rows = self._db.execute(sql, (entity_id, now, limit))
        return [EntityMessage(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7]) for r in rows]

    @staticmethod
    def last_entity_visible_at(db: sqlite3.Connection, entity_id: str, sender: str | None) -> float:
        """The latest `visible_at` of the queued operations from one sender to one entity, or 0.0.

        Args:
            db: the connection, inside the transaction that queues the next operation.
            entity_id: the target entity's scheduler id.
            sender: the sending orchestration's instance id, or None for clients.
        """
        row = db.execute(
            "SELECT MAX(visible_at) FROM entity_messages WHERE entity_id = ? AND parent_instance_id IS ?",
            (entity_id, sender),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0

    def entities_with_visible_messages(self, now: float) -> list[str]:
        """Entities that have at least one operation visible now."""
        rows = self._db.execute("SELECT DISTINCT entity_id FROM entity_messages WHERE visible_at <= ?", (now,))
        return [row[0] for row in rows]

    def next_invisible_entity_times(self, now: float) -> list[tuple[float, str]]:
        """(visible_at, entity id) of every scheduled signal."""
        rows = self._db.execute("SELECT visible_at, entity_id FROM entity_messages WHERE visible_at > ?", (now,))
        return [(row[0], row[1]) for row in rows]

    def get_entity_state(self, entity_id: str) -> str | None:
        """The entity's state as JSON text, or None when it does not exist."""
        row = self._db.execute("SELECT state FROM entities WHERE entity_id = ?", (entity_id,)).fetchone()
        return row[0] if row else None

    def list_entities(self, name: str | None) -> list[tuple[str, str, str, float]]:
        """(name, key, state, last_modified) of the existing entities, optionally of one name."""
        sql = "SELECT name, key, state, last_modified FROM entities"
        args: list[Any] = []
        if name:
            sql += " WHERE name = ?"
            args.append(name.lower())
        return [(r[0], r[1], r[2], r[3]) for r in self._db.execute(sql + " ORDER BY name, key", args)]

    @staticmethod
    def enqueue_entity_message(
        db: sqlite3.Connection,
        entity_id: str,
        operation: str,
        input_text: str | None,
        *,
        is_signal: bool,
        request_id: str | None = None,
        parent_instance_id: str | None = None,
        parent_execution_id: str | None = None,
        visible_at: float = 0.0,
    ) -> None:
        """Queue one entity operation (inside a transaction)."""
        db.execute(
            "INSERT INTO entity_messages (entity_id, operation, input, is_signal, request_id, parent_instance_id, "
            "parent_execution_id, visible_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entity_id,
                operation,
                input_text,
                int(is_signal),
                request_id,
                parent_instance_id,
                parent_execution_id,
                visible_at,
            ),
        )

    # ------------------------------------------------------------------ timer triggers

    def get_timer_state(self, function_name: str) -> tuple[float | None, float | None]:
        """(last fire, next fire) of a timer trigger, as epoch seconds."""
        row = self._db.execute(
            "SELECT last_fire, next_fire FROM timer_triggers WHERE function_name = ?", (function_name,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def set_timer_state(self, function_name: str, last_fire: float | None, next_fire: float | None, now: float) -> None:
        """Record a timer trigger's last and next fire times."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO timer_triggers (function_name, last_fire, next_fire, last_updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (function_name) DO UPDATE SET last_fire = excluded.last_fire, "
                "next_fire = excluded.next_fire, last_updated = excluded.last_updated",
                (function_name, last_fire, next_fire, now),
            )


_VISIBLE_MESSAGES_WHERE = (
    "SELECT id, instance_id, execution_id, visible_at, event FROM inbox WHERE instance_id = ? AND visible_at <= ?"
)
_VISIBLE_MESSAGES = _VISIBLE_MESSAGES_WHERE + " ORDER BY id"
_VISIBLE_MESSAGES_BY_VISIBILITY = _VISIBLE_MESSAGES_WHERE + " ORDER BY visible_at, id"
_ENTITY_BATCH_WHERE = (
    "SELECT id, entity_id, operation, input, is_signal, request_id, parent_instance_id, parent_execution_id "
    "FROM entity_messages WHERE entity_id = ? AND visible_at <= ?"
)
_ENTITY_BATCH = _ENTITY_BATCH_WHERE + " ORDER BY id LIMIT ?"
_ENTITY_BATCH_BY_VISIBILITY = _ENTITY_BATCH_WHERE + " ORDER BY visible_at, id LIMIT ?"
_ACTIVITY_COLUMNS = "id, instance_id, execution_id, task_id, name, input, visible_at"

_INSTANCE_COLUMNS = (
    "instance_id, execution_id, name, version, status, input, output, custom_status, created_time, last_updated_time"
)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a state directory written by an older devhost up to `SCHEMA_VERSION` (inside a transaction)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(activities)")}
    if "visible_at" not in columns:  # schema 1
        db.execute("ALTER TABLE activities ADD COLUMN visible_at REAL NOT NULL DEFAULT 0")
        logger.info("Upgraded the durable store to schema %d (activities.visible_at)", SCHEMA_VERSION)


def _instance_filter(
    created_from: float | None, created_to: float | None, statuses: list[str] | None, prefix: str | None
) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if created_from is not None:
        clauses.append("created_time >= ?")
        args.append(created_from)
    if created_to is not None:
        clauses.append("created_time <= ?")
        args.append(created_to)
    if statuses:
        clauses.append("status IN (" + ",".join("?" * len(statuses)) + ")")
        args.extend(statuses)
    if prefix:
        clauses.append("substr(instance_id, 1, ?) = ?")
        args.extend([len(prefix), prefix])
    return clauses, args


def create_private(path: Path) -> Path:
    """Create the file readable by its owner only (0600) if it is missing; tighten it if it is not private."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            ensure_private(path)
    return path


def ensure_private(path: Path) -> None:
    """Restrict a file to its owner (the keys file)."""
    try:
        os.chmod(path, 0o600)
    except OSError:
        logger.debug("could not chmod %s", path)


class GroupCommitter:
    """Group commit: every write submitted during one loop iteration commits in one transaction.

    Each write function runs inside its own savepoint, so a write that raises is undone alone and its future gets
    the exception; the others commit together (one fsync). A future resolves only after the commit, which is what
    makes it safe to acknowledge the write then.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._scheduled = False

    def submit(self, write: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        """Queue `write(db)`; the future gets its return value once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((write, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            with self._store.transaction() as db:
                for number, (write, future) in enumerate(batch):
                    db.execute(f"SAVEPOINT write_{number}")
                    try:
                        outcomes.append((future, True, write(db)))
                    except Exception as error:
                        db.execute(f"ROLLBACK TO write_{number}")
                        outcomes.append((future, False, error))
                    db.execute(f"RELEASE write_{number}")
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for future, succeeded, value in outcomes:
            if future.done():
                continue
            if succeeded:
                future.set_result(value)
            else:
                future.set_exception(value)
