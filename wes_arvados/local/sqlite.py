"""The one way this server opens SQLite: WAL mode, a long busy timeout, one connection per thread.

Every process (web workers, schedulers, supervisors, pull threads) opens its own
connections; writes that must not race use `Database.transaction` (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

BUSY_TIMEOUT_SECONDS = 60


class Database:
    """One SQLite file with its schema; `conn()` gives this thread's connection."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn().executescript(schema)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; rows as `sqlite3.Row`)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
            self._local.conn = conn
        return conn

    def check_writable(self, timeout: float = 2.0) -> None:
        """Take the write lock on a connection of its own, and let it go; `sqlite3.Error` if that fails in `timeout`.

        The file must exist (it is not created here): a state directory that went
        away is not writable for the server's open connections either.
        """
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True, timeout=timeout,
                               isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the database's write lock from its start."""
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
