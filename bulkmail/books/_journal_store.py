"""The journal's SQLite file: schema and statements, the lock, opening, reports, export.

Private to :mod:`bulkmail.books.journal`, whose :class:`~bulkmail.books.journal.Journal`
decides when a row changes state. This module holds how the books sit on disk: the schema
and the SQL that moves rows, the pid lock beside the file, the format and hash checks (and
the settling of in-flight rows) done at open, the read-only counts and the atomic results export.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bulkmail.errors import JournalError

SCHEMA_VERSION = 1
STATES = ("pending", "in_flight", "sent", "failed", "skipped", "uncertain")
SUPPRESSED = "the address is on the suppression list"
IN_CLAUSE = 500  # keys per "IN (...)" lookup, well under SQLite's variable limit

_SCHEMA = f"""
CREATE TABLE meta (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    campaign_hash TEXT NOT NULL,
    list_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    imported_through INTEGER NOT NULL DEFAULT 0,
    finished_import INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE rows (
    id INTEGER PRIMARY KEY,                 -- the list line number
    email TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,               -- the dedupe key: the duplicate detector
    fields BLOB NOT NULL,                   -- orjson
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {STATES!r}),
    possible_duplicate INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    message_id TEXT,
    error_code TEXT,
    error TEXT,
    first_attempt_at TEXT,
    finished_at TEXT
);
-- (state, rowid): pending() and recovery seek straight to their rows, counts() reads only it
CREATE INDEX rows_state ON rows(state);
CREATE INDEX rows_possible_duplicate ON rows(id) WHERE possible_duplicate = 1;
CREATE TABLE skips (line INTEGER PRIMARY KEY, email TEXT NOT NULL, code TEXT NOT NULL,
                    reason TEXT NOT NULL);
CREATE TABLE suppressed (key TEXT PRIMARY KEY) WITHOUT ROWID;
"""

INSERT_ROW = "INSERT INTO rows (id, email, key, fields) VALUES (?, ?, ?, ?)"
INSERT_SKIP = "INSERT OR IGNORE INTO skips (line, email, code, reason) VALUES (?, ?, ?, ?)"
SELECT_STATE = (
    "SELECT id, email, fields, possible_duplicate, attempts FROM rows "
    "WHERE state = ? AND id > ? ORDER BY id LIMIT ?"
)
MARK = (
    "UPDATE rows SET state = 'in_flight', first_attempt_at = coalesce(first_attempt_at, ?) "
    "WHERE id = ? AND state = 'pending'"
)
# ?1 state ?2 message_id ?3 error_code ?4 error ?5 attempts ?6 possible_duplicate (NULL: keep)
# ?7 final? ?8 attempted? ?9 now ?10 id. Rows already in a final state are never touched:
# a late or repeated outcome cannot turn a sent row back into a pending one.
RECORD = """
UPDATE rows SET state = ?1,
    message_id = coalesce(?2, message_id),
    error_code = CASE WHEN ?7 THEN ?3 ELSE coalesce(?3, error_code) END,
    error = CASE WHEN ?7 THEN ?4 ELSE coalesce(?4, error) END,
    attempts = max(attempts, ?5),
    possible_duplicate = coalesce(?6, possible_duplicate),
    first_attempt_at = CASE WHEN ?8 THEN coalesce(first_attempt_at, ?9) ELSE first_attempt_at END,
    finished_at = CASE WHEN ?7 THEN ?9 ELSE finished_at END
WHERE id = ?10 AND state IN ('pending', 'in_flight')
"""
_EXPORT = """
SELECT id, email, state, message_id, error_code, error, attempts, possible_duplicate,
       first_attempt_at, finished_at FROM rows
UNION ALL
SELECT line, email, 'skipped', NULL, code, reason, 0, 0, NULL, NULL FROM skips
ORDER BY 1
"""
_EXPORT_KEYS = (
    "line",
    "email",
    "status",
    "message_id",
    "error_code",
    "error",
    "attempts",
    "possible_duplicate",
    "first_attempt_at",
    "finished_at",
)


# -- the file lock ----------------------------------------------------------------------


def lock(lock_path: Path, journal: Path) -> int:
    """Take an exclusive flock on ``lock_path`` and write our pid into it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise JournalError(f"{journal} is in use by another bulkmail run (pid {holder})") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


# -- opening: format and hash checks ----------------------------------------------------


def configure(conn: sqlite3.Connection) -> None:
    """Connection settings; run outside a transaction (journal_mode cannot change in one)."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # FULL would be needed for power loss
    conn.execute("PRAGMA cache_size = -32000")
    conn.execute("PRAGMA temp_store = MEMORY")


def prepare(
    conn: sqlite3.Connection,
    path: Path,
    campaign_hash: str,
    list_hash: str,
    on_change: str,
    now: Callable[[], str],
) -> None:
    """Create the schema in an empty file, or check the format and hashes of an existing one.

    Runs inside the caller's transaction. ``on_change`` is as for :meth:`Journal.open`.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise JournalError(f"{path}: exists and is not a bulkmail journal")
        for statement in _SCHEMA.split(";"):  # no ";" inside a statement or comment
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT INTO meta (one, campaign_hash, list_hash, created_at) VALUES (1, ?, ?, ?)",
            (campaign_hash, list_hash, now()),
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    elif version != SCHEMA_VERSION:
        raise JournalError(
            f"{path}: journal format {version} is not supported "
            f"(this bulkmail writes format {SCHEMA_VERSION})"
        )
    else:
        _check_hashes(conn, path, campaign_hash, list_hash, on_change, now)


def _check_hashes(
    conn: sqlite3.Connection,
    path: Path,
    campaign_hash: str,
    list_hash: str,
    on_change: str,
    now: Callable[[], str],
) -> None:
    old_campaign, old_list = conn.execute("SELECT campaign_hash, list_hash FROM meta").fetchone()
    changed = [
        what
        for what, differs in (
            (
                "the campaign content (subject, body, sender or settings)",
                old_campaign != campaign_hash,
            ),
            ("the recipient list", old_list != list_hash),
        )
        if differs
    ]
    if not changed:
        return
    if on_change == "restart":
        for table in ("rows", "skips", "suppressed"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute(
            "UPDATE meta SET campaign_hash = ?, list_hash = ?, created_at = ?, "
            "imported_through = 0, finished_import = 0",
            (campaign_hash, list_hash, now()),
        )
    elif on_change == "force":
        if old_list != list_hash:
            # Rows are resumed by line number: a list edited above the resume point would
            # shift lines and silently skip people. Refuse rather than guess.
            raise JournalError(
                f"{path}: the recipient list changed since this journal was started, and "
                "--force continues only a changed campaign file: resuming an edited list "
                "could skip recipients. Restore the list, or run with --restart to start "
                "over (everyone is sent to again). To stop mailing someone, add them to "
                "the suppression file instead: it is read again on every run."
            )
        conn.execute("UPDATE meta SET campaign_hash = ?", (campaign_hash,))
    else:
        raise JournalError(
            f"{path}: {' and '.join(changed)} changed since this journal was "
            "started. Run again with --restart to start over (everyone is sent to "
            "again) or --force to continue with the new content (recipients already "
            "sent to are not sent to again)."
        )


def read_meta(conn: sqlite3.Connection) -> tuple[int, bool, bool]:
    """``(imported_through, finished_import, has_suppressed)`` as stored."""
    through, finished = conn.execute(
        "SELECT imported_through, finished_import FROM meta"
    ).fetchone()
    has_suppressed = conn.execute("SELECT EXISTS (SELECT 1 FROM suppressed)").fetchone()[0]
    return through, bool(finished), has_suppressed == 1


def recover(
    conn: sqlite3.Connection, at_most_once: bool, now: Callable[[], str]
) -> tuple[int, int, int]:
    """Settle rows left ``in_flight`` by a run that died: ``(ambiguous, requeued, uncertain)``."""
    ambiguous: int = conn.execute("SELECT count(*) FROM rows WHERE state = 'in_flight'").fetchone()[
        0
    ]
    if not ambiguous:
        return 0, 0, 0
    if at_most_once:
        conn.execute(
            "UPDATE rows SET state = 'uncertain', finished_at = ?, "
            "error_code = coalesce(error_code, 'interrupted'), error = coalesce(error, "
            "'the run ended while this request was in flight: it may have been sent') "
            "WHERE state = 'in_flight'",
            (now(),),
        )
        return ambiguous, 0, ambiguous
    conn.execute(
        "UPDATE rows SET state = 'pending', possible_duplicate = 1 WHERE state = 'in_flight'"
    )
    return ambiguous, ambiguous, 0


# -- values in and out ------------------------------------------------------------------


def timestamp(seconds: float) -> str:
    """UTC, milliseconds, ``Z``: ``2024-05-01T12:00:00.000Z``."""
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dump_fields(fields: Mapping[str, Any]) -> bytes:
    return orjson.dumps(fields if isinstance(fields, dict) else dict(fields))


def lookup(conn: sqlite3.Connection, sql: str, keys: Mapping[str, object]) -> dict[str, int]:
    """Run ``sql`` (with one ``IN ({})``) over ``keys`` in chunks; merge the (key, value) rows."""
    found: dict[str, int] = {}
    batch = list(keys)
    for start in range(0, len(batch), IN_CLAUSE):
        part = batch[start : start + IN_CLAUSE]
        query = sql.format(",".join("?" * len(part)))
        found.update(conn.execute(query, part).fetchall())
    return found


# -- reading the books ------------------------------------------------------------------


def count_states(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per state (skipped list rows included), ``possible_duplicate`` and ``total``."""
    counts = dict.fromkeys(STATES, 0)
    counts.update(conn.execute("SELECT state, count(*) FROM rows GROUP BY state").fetchall())
    counts["skipped"] += conn.execute("SELECT count(*) FROM skips").fetchone()[0]
    counts["possible_duplicate"] = conn.execute(
        "SELECT count(*) FROM rows WHERE possible_duplicate = 1"
    ).fetchone()[0]
    counts["total"] = sum(counts[s] for s in STATES)
    return counts


def count_problem_skips(conn: sqlite3.Connection, benign: Iterable[str]) -> int:
    """Skipped list rows and skipped recipients whose code is not in ``benign``."""
    codes = sorted(set(benign))
    marks = ",".join("?" * len(codes))
    n_skips = conn.execute(
        f"SELECT count(*) FROM skips WHERE code NOT IN ({marks})", codes
    ).fetchone()[0]
    n_rows = conn.execute(
        "SELECT count(*) FROM rows WHERE state = 'skipped' "
        f"AND coalesce(error_code, '') NOT IN ({marks})",
        codes,
    ).fetchone()[0]
    return int(n_skips + n_rows)


#: The ``event`` of a results line: what SES reported for its message, most telling first
#: (complained, bounced = a permanent bounce, rejected, soft_bounced, delayed, delivered).
_EVENT_OF = """(SELECT CASE
    WHEN sum(kind = 'complaint') THEN 'complained'
    WHEN sum(kind = 'bounce' AND subtype = 'Permanent') THEN 'bounced'
    WHEN sum(kind = 'reject') THEN 'rejected'
    WHEN sum(kind = 'bounce') THEN 'soft_bounced'
    WHEN sum(kind = 'delay') THEN 'delayed'
    WHEN sum(kind = 'delivery') THEN 'delivered'
  END FROM ev.events WHERE ev.events.message_id = x.message_id)"""


def write_results(conn: sqlite3.Connection, path: Path, *, events: Path | None = None) -> int:
    """Stream one JSON line per list row to ``path`` atomically; see Journal.export_results."""
    if events is None:
        return _write_results(conn, path, _EXPORT, _EXPORT_KEYS)
    keys = (*_EXPORT_KEYS, "event")
    if not Path(events).exists():  # no event received yet: the field is there, and null
        return _write_results(
            conn, path, f"SELECT x.*, NULL FROM ({_EXPORT}) AS x ORDER BY x.id", keys
        )
    conn.execute("ATTACH DATABASE ? AS ev", (str(events),))
    try:
        sql = f"SELECT x.*, {_EVENT_OF} FROM ({_EXPORT}) AS x ORDER BY x.id"
        return _write_results(conn, path, sql, keys)
    finally:
        conn.execute("DETACH DATABASE ev")


def _write_results(conn: sqlite3.Connection, path: Path, sql: str, keys: tuple[str, ...]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    written = 0
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            cursor = conn.execute(sql)  # one statement: one snapshot
            while batch := cursor.fetchmany(2000):
                for row in batch:
                    record = dict(zip(keys, row, strict=True))
                    record["possible_duplicate"] = bool(row[7])
                    out.write(orjson.dumps(record))
                    out.write(b"\n")
                written += len(batch)
            out.flush()
            try:  # mkstemp makes 0600: keep the old file's mode, else a plain file's
                os.fchmod(out.fileno(), path.stat().st_mode & 0o777)
            except FileNotFoundError:
                os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return written


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
