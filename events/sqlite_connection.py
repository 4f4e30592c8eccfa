"""How the ledger's SQLite files are opened for writing: WAL, and a busy handler that waits
from the very first statement.

``PRAGMA busy_timeout`` set after ``PRAGMA journal_mode=WAL`` comes too late for that
statement, which then waits only Python's default five seconds: enough for another process's
last-close checkpoint (an exclusive lock on the file) to fail an open on a loaded machine.
"""

import sqlite3
from pathlib import Path

BUSY_TIMEOUT_S = 30.0
"""How long a statement waits for another process's lock before it fails."""


def connect_wal(
    path: Path | str, *, durable: bool, page_size: int | None = None
) -> sqlite3.Connection:
    """A writable WAL connection to ``path`` (created if missing), in autocommit mode.
    ``durable``: ``synchronous=FULL`` (a commit survives a power cut), else ``NORMAL``.
    ``page_size``: the page size of a new file (a WAL file keeps the one it was made with)."""
    db = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    if page_size is not None:  # before journal_mode=WAL, which writes a new file's header
        db.execute(f"PRAGMA page_size={page_size}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    return db
