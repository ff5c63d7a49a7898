"""A store file written by an earlier version opens with this one: nothing lost, and what the new version adds.

Version 2 files have no date words: opening one adds the ``when_text`` column, fills it for every turn and rebuilds
the full-text index with it, once, in one transaction. Opening one also adds version 4's per-user versions.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from memory_core.adapters.sqlite import STORE_SCHEMA_VERSION, SqliteStore
from memory_core.domain import MemoryKind
from tests.contract.test_store_contract import ALL_KINDS, make_turn

# The full-text index and its triggers as version 2 wrote them (scope and text only).
_VERSION_2_FTS = """
CREATE VIRTUAL TABLE items_fts USING fts5(
    scope, text, content='items', content_rowid='rowid', tokenize='porter unicode61'
);
CREATE TRIGGER items_ai AFTER INSERT ON items BEGIN
    INSERT INTO items_fts (rowid, scope, text) VALUES (new.rowid, new.scope, new.text);
END;
CREATE TRIGGER items_ad AFTER DELETE ON items BEGIN
    INSERT INTO items_fts (items_fts, rowid, scope, text) VALUES ('delete', old.rowid, old.scope, old.text);
END;
CREATE TRIGGER items_au AFTER UPDATE OF text, scope ON items BEGIN
    INSERT INTO items_fts (items_fts, rowid, scope, text) VALUES ('delete', old.rowid, old.scope, old.text);
    INSERT INTO items_fts (rowid, scope, text) VALUES (new.rowid, new.scope, new.text);
END;
INSERT INTO items_fts (items_fts) VALUES ('rebuild');
UPDATE meta SET value = '2' WHERE key = 'store_schema_version';
"""


def _as_version_2(path: Path) -> None:
    """Turn a file this version wrote into the layout version 2 wrote, rows kept."""
    with sqlite3.connect(path) as db:
        for name in ("items_ai", "items_ad", "items_au", "items_version_ai", "items_version_au", "items_version_ad"):
            db.execute(f"DROP TRIGGER {name}")
        db.execute("DROP TABLE items_fts")
        db.execute("DROP TABLE user_versions")
        db.execute("ALTER TABLE items DROP COLUMN when_text")
        db.executescript(_VERSION_2_FTS)


async def test_a_version_2_file_gets_its_turns_dates_indexed(tmp_path: Path):
    path = tmp_path / "memory.sqlite3"
    may_8 = datetime(2023, 5, 8, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    turns = [make_turn("alice", "s1", seq, f"We planned the garden, part {seq}") for seq in (1, 2)]
    turns[0] = turns[0].model_copy(update={"timestamp": may_8})
    store = SqliteStore(path)
    await store.open(None, None)
    await store.put_turns(turns)
    await store.close()
    _as_version_2(path)

    reopened = SqliteStore(path)
    await reopened.open(None, None)
    try:
        assert [t.text() for t in await reopened.get_turns("alice", "s1")] == [t.text() for t in turns]
        hits = await reopened.search_text("alice", "garden on 8 May 2023", ALL_KINDS, 10)
        assert [h.seqs for h in hits] == [(1,), (2,)] and hits[0].score > hits[1].score
        assert all(h.kind is MemoryKind.TURN for h in hits)
        # What is written after the upgrade is indexed the same way, and a rewrite replaces the old entry.
        await reopened.put_turns([turns[1].model_copy(update={"timestamp": may_8 + timedelta(days=1)})])
        assert [h.seqs for h in await reopened.search_text("alice", "9 May", ALL_KINDS, 10)] == [(2,), (1,)]
    finally:
        await reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'store_schema_version'").fetchone() == (
            str(STORE_SCHEMA_VERSION),
        )
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # Version 4: the writes after the upgrade versioned the user's items (what cached vectors are checked by).
        assert db.execute("SELECT user_id FROM user_versions").fetchall() == [("alice",)]
        db.execute("INSERT INTO items_fts (items_fts) VALUES ('integrity-check')")  # raises if index and rows differ
