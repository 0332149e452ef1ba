"""Durable run state of the local backend: one SQLite database in WAL mode.

Every process (web workers, the scheduler, run supervisors) opens its own
connection; writes that must not race use ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Dict, List, Optional, Sequence

from ..errors import NotFound
from ..images.stores.base import StoredImage
from ..timestamps import utcnow
from ..wes.pages import decode_token, encode_token
from ..wes.caller import ANONYMOUS_USER
from ..wes.states import ACTIVE, State
from .sqlite import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    submitted_time TEXT NOT NULL,
    start_time TEXT,
    end_time TEXT,
    exit_code INTEGER,
    cmd TEXT,
    supervisor_pid INTEGER,
    supervisor_started REAL,
    engine_pid INTEGER,
    claimed_time TEXT,
    owner TEXT NOT NULL DEFAULT 'anonymous'
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state, seq);
CREATE TABLE IF NOT EXISTS run_tags (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS run_tags_kv ON run_tags(key, value);
CREATE TABLE IF NOT EXISTS system_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS system_logs_run ON system_logs(run_id, id);
"""



@dataclass
class RunRow:
    """One row of the runs table."""

    seq: int
    run_id: str
    state: State
    request: Dict[str, Any]
    submitted_time: str
    start_time: Optional[str]
    end_time: Optional[str]
    exit_code: Optional[int]
    cmd: List[str]
    supervisor_pid: Optional[int]
    supervisor_started: Optional[float]
    engine_pid: Optional[int]
    claimed_time: Optional[str]


def _row(r: sqlite3.Row) -> RunRow:
    return RunRow(
        seq=r["seq"], run_id=r["run_id"], state=State(r["state"]), request=json.loads(r["request"]),
        submitted_time=r["submitted_time"], start_time=r["start_time"], end_time=r["end_time"],
        exit_code=r["exit_code"], cmd=json.loads(r["cmd"]) if r["cmd"] else [],
        supervisor_pid=r["supervisor_pid"], supervisor_started=r["supervisor_started"],
        engine_pid=r["engine_pid"], claimed_time=r["claimed_time"],
    )


class RunStore:
    """Reads and writes runs; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = Database(path, SCHEMA)
        columns = {row["name"] for row in self._conn().execute("PRAGMA table_info(runs)")}
        if "owner" not in columns:  # a state directory from before runs had owners: theirs is the anonymous user's
            self._conn().execute(f"ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT '{ANONYMOUS_USER}'")
        self._conn().execute("CREATE INDEX IF NOT EXISTS runs_owner ON runs(owner, seq)")
        # A user's runs in one state, newest first, without reading the others (ListRuns' state filter).
        self._conn().execute("CREATE INDEX IF NOT EXISTS runs_owner_state ON runs(owner, state, seq)")

    def _conn(self) -> sqlite3.Connection:
        return self.db.conn()

    def transaction(self) -> "ContextManager[sqlite3.Connection]":
        """A write transaction that holds the database's write lock from its start."""
        return self.db.transaction()

    def insert(self, run_id: str, request: Dict[str, Any], notes: Sequence[str], owner: str = ANONYMOUS_USER) -> None:
        """Record a new QUEUED run of `owner` with its tags and first system log lines."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (run_id, state, request, submitted_time, owner) VALUES (?, ?, ?, ?, ?)",
                (run_id, State.QUEUED.value, json.dumps(request), utcnow(), owner),
            )
            db.executemany(
                "INSERT INTO run_tags (run_id, key, value) VALUES (?, ?, ?)",
                [(run_id, k, v) for k, v in request.get("tags", {}).items()],
            )
            db.executemany("INSERT INTO system_logs (run_id, line) VALUES (?, ?)", [(run_id, n) for n in notes])

    def get(self, run_id: str, owner: Optional[str] = None) -> RunRow:
        """The run's row; `NotFound` when there is none (of `owner`'s, when given: others' runs are not shown)."""
        if owner is None:
            r = self._conn().execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        else:
            r = self._conn().execute("SELECT * FROM runs WHERE run_id = ? AND owner = ?", (run_id, owner)).fetchone()
        if r is None:
            raise NotFound(f"no run with id {run_id!r}")
        return _row(r)

    def system_logs(self, run_id: str) -> List[str]:
        """The run's system log lines, oldest first."""
        rows = self._conn().execute("SELECT line FROM system_logs WHERE run_id = ? ORDER BY id", (run_id,))
        return [r["line"] for r in rows]

    def log(self, run_id: str, line: str, db: Optional[sqlite3.Connection] = None) -> None:
        """Append a timestamped line to the run's system logs (inside `db`'s transaction, if given)."""
        if db is not None:
            db.execute("INSERT INTO system_logs (run_id, line) VALUES (?, ?)", (run_id, f"{utcnow()} {line}"))
            return
        with self.transaction() as tx:
            self.log(run_id, line, tx)

    def oldest_queued(self, db: sqlite3.Connection) -> Optional[str]:
        """The id of the run that has waited longest in QUEUED, if any."""
        row = db.execute("SELECT run_id FROM runs WHERE state = ? ORDER BY seq LIMIT 1", (State.QUEUED.value,)).fetchone()
        return None if row is None else row["run_id"]

    def page(self, page_size: int, token: Optional[str], states: Sequence[State], tags: Dict[str, str],
             owner: Optional[str] = None) -> tuple:
        """Runs (of `owner`, when given) newest first after the token's position; returns (rows, next token or "")."""
        where: List[str] = []
        args: List[Any] = []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        before = decode_token(token)
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += [s.value for s in states]
        for key, value in tags.items():
            where.append("run_id IN (SELECT run_id FROM run_tags WHERE key = ? AND value = ?)")
            args += [key, value]
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._conn().execute(sql + " ORDER BY seq DESC LIMIT ?", args + [page_size + 1]).fetchall()
        more = len(rows) > page_size
        rows = [_row(r) for r in rows[:page_size]]
        return rows, (encode_token(rows[-1].seq) if more else "")

    def tags(self, run_id: str) -> Dict[str, str]:
        """The run's tags."""
        return {r["key"]: r["value"] for r in self._conn().execute("SELECT key, value FROM run_tags WHERE run_id = ?", (run_id,))}

    def counts(self, owner: Optional[str] = None) -> Dict[str, int]:
        """Number of runs (of `owner`, when given) per state, every state included."""
        counts = {s.value: 0 for s in State}
        where, args = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        for r in self._conn().execute(f"SELECT state, COUNT(*) AS n FROM runs {where} GROUP BY state", args):
            counts[r["state"]] = r["n"]
        return counts

    def in_states(self, states: Sequence[State]) -> List[RunRow]:
        """All runs in the given states, oldest first."""
        rows = self._conn().execute(
            f"SELECT * FROM runs WHERE state IN ({','.join('?' * len(states))}) ORDER BY seq",
            [s.value for s in states],
        )
        return [_row(r) for r in rows]

    def update(self, run_id: str, db: Optional[sqlite3.Connection] = None, **fields: Any) -> None:
        """Set columns of a run (inside the caller's transaction when `db` is given)."""
        if "state" in fields and isinstance(fields["state"], State):
            fields["state"] = fields["state"].value
        if "cmd" in fields:
            fields["cmd"] = json.dumps(fields["cmd"])
        sql = f"UPDATE runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE run_id = ?"
        if db is not None:
            db.execute(sql, list(fields.values()) + [run_id])
            return
        with self.transaction() as tx:
            tx.execute(sql, list(fields.values()) + [run_id])

    def finish(self, run_id: str, state: State, line: str, db: Optional[sqlite3.Connection] = None,
               **fields: Any) -> None:
        """End the run in `state` with a system_logs line saying why (and `fields`, e.g. exit_code)."""
        if db is None:
            with self.transaction() as tx:
                return self.finish(run_id, state, line, tx, **fields)
        fields.setdefault("end_time", utcnow())
        self.update(run_id, db, state=state, **fields)
        db.execute("INSERT INTO system_logs (run_id, line) VALUES (?, ?)", (run_id, f"{utcnow()} {line}"))

    def active_count(self, db: sqlite3.Connection) -> int:
        """How many runs are claimed and not yet finished, read inside a transaction."""
        return db.execute(f"SELECT COUNT(*) FROM runs WHERE state IN ({','.join('?' * len(ACTIVE))})",
                          [s.value for s in ACTIVE]).fetchone()[0]

    def state_in_tx(self, db: sqlite3.Connection, run_id: str, owner: Optional[str] = None) -> State:
        """The run's state read inside a transaction; `NotFound` when there is none (of `owner`'s, when given)."""
        r = db.execute("SELECT state FROM runs WHERE run_id = ? AND (? IS NULL OR owner = ?)",
                       (run_id, owner, owner)).fetchone()
        if r is None:
            raise NotFound(f"no run with id {run_id!r}")
        return State(r["state"])


PULLS_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_pulls (
    id TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    platform TEXT,
    state TEXT NOT NULL,
    submitted_time TEXT NOT NULL,
    end_time TEXT,
    image_id TEXT,
    manifest_digest TEXT,
    size INTEGER,
    downloaded INTEGER,
    cached INTEGER,
    store TEXT,
    error TEXT,
    owner_pid INTEGER NOT NULL,
    owner_started REAL,
    claimed_time TEXT
);
"""


class ImagePullRecords:
    """The image pull service's records (``POST /images``): one row per pull, shared by every process."""

    def __init__(self, database: Path) -> None:
        self.db = Database(database, PULLS_SCHEMA)
        columns = {row["name"] for row in self.db.conn().execute("PRAGMA table_info(image_pulls)")}
        if "claimed_time" not in columns:  # a state directory from before pulls had processes of their own
            self.db.conn().execute("ALTER TABLE image_pulls ADD COLUMN claimed_time TEXT")

    def insert(self, **fields: Any) -> None:
        """Record a new pull."""
        self.db.conn().execute(f"INSERT INTO image_pulls ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
                               list(fields.values()))

    def update(self, pull_id: str, **fields: Any) -> None:
        """Change some fields of a pull."""
        sql = f"UPDATE image_pulls SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?"
        self.db.conn().execute(sql, [*fields.values(), pull_id])

    def claim_queued(self, now: str) -> Optional[str]:
        """Mark the oldest queued pull that nobody claimed as claimed at `now`; return its id (None if none)."""
        with self.db.transaction() as db:
            row = db.execute("SELECT id FROM image_pulls WHERE state = ? AND claimed_time IS NULL "
                             "ORDER BY submitted_time LIMIT 1", (State.QUEUED.value,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE image_pulls SET claimed_time = ? WHERE id = ?", (now, row["id"]))
            return row["id"]

    def get(self, pull_id: str) -> Optional[Dict[str, Any]]:
        """A pull's row as a dict, or None."""
        row = self.db.conn().execute("SELECT * FROM image_pulls WHERE id = ?", (pull_id,)).fetchone()
        return None if row is None else {k: row[k] for k in row.keys()}


STORED_IMAGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS stored_images (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    platform TEXT,
    stored_at TEXT NOT NULL
);
"""


class StoredImageRecords:
    """What the local image store was asked to keep, by name, for listings; shared by every process."""

    def __init__(self, database: Path) -> None:
        self.db = Database(database, STORED_IMAGES_SCHEMA)

    def get(self, name: str) -> Optional[StoredImage]:
        """The record of `name`, if any."""
        row = self.db.conn().execute("SELECT * FROM stored_images WHERE name = ?", (name,)).fetchone()
        return None if row is None else StoredImage(location=row["name"], **{k: row[k] for k in row.keys()})

    def put(self, record: StoredImage) -> StoredImage:
        """Record (or replace the record of) an image; return it."""
        self.db.conn().execute(
            "INSERT OR REPLACE INTO stored_images (name, image_id, manifest_digest, size, platform, stored_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (record.name, record.image_id, record.manifest_digest, record.size, record.platform, record.stored_at))
        return record

    def newest_first(self) -> List[StoredImage]:
        """Every record, newest first."""
        rows = self.db.conn().execute("SELECT * FROM stored_images ORDER BY stored_at DESC").fetchall()
        return [StoredImage(location=r["name"], **{k: r[k] for k in r.keys()}) for r in rows]
