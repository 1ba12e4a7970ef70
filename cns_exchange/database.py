"""The practice database (SQLite): versioned schema, migrations, the transfer ledger.

The schema is applied by numbered migrations tracked in ``PRAGMA user_version``; users may
query the tables themselves (docs/database.md). The file is created 0600: it holds health
data. Every change is a transaction; concurrent runs are kept apart by :mod:`lock`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from cns_exchange.errors import ConfigError

MIGRATIONS: list[str] = [
    # 1: the transfer ledger: every upload and every fetched file.
    """
    CREATE TABLE uploads (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL,              -- final name on the server
        sha256      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        kind        TEXT NOT NULL,              -- request | billing | attachment
        profile     TEXT NOT NULL,
        remote      TEXT NOT NULL,              -- e.g. sftp://user@host:22
        local_path  TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        result      TEXT NOT NULL CHECK (result IN ('pending', 'sent', 'failed')),
        message     TEXT
    );
    CREATE UNIQUE INDEX uploads_name ON uploads (remote, name);
    CREATE INDEX uploads_sha256 ON uploads (sha256);
    CREATE TABLE fetched (
        id            INTEGER PRIMARY KEY,
        remote_name   TEXT NOT NULL,
        size          INTEGER NOT NULL,
        mtime         INTEGER NOT NULL,
        sha256        TEXT NOT NULL,
        local_path    TEXT NOT NULL,
        profile       TEXT NOT NULL,
        remote        TEXT NOT NULL,
        fetched_at    TEXT NOT NULL,
        remote_state  TEXT NOT NULL CHECK (remote_state IN ('kept', 'delete', 'archive', 'deleted', 'archived')),
        duplicate_of  INTEGER REFERENCES fetched (id)
    );
    CREATE UNIQUE INDEX fetched_key ON fetched (remote, remote_name, size, mtime);
    CREATE INDEX fetched_sha256 ON fetched (sha256);
    """,
]


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating 0600 if needed) and migrate the practice database."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path}: not a usable cnsx database ({exc})", "check the database setting") from None
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the database has not seen; return its schema version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise ConfigError(f"the database has schema version {version}, newer than this cnsx knows ({len(MIGRATIONS)})",
                          "upgrade cnsx")
    for number in range(version, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (our SQL has no ';' inside literals)."""
    return [s for s in script.split(";") if s.strip()]
