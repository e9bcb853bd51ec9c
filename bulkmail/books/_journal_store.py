"""The journal's SQLite file: schema and statements, the lock, opening, reports, export.

Private to :mod:`bulkmail.books.journal`, whose :class:`~bulkmail.books.journal.Journal`
decides when a row changes state. This module holds how the books sit on disk: the schema
and the SQL that moves rows, the pid lock beside the file, the format and hash checks (and
the settling of in-flight rows) done at open, the read-only counts and the atomic results export.
"""

from __future__ import annotations

import contextlib
import errno
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

SCHEMA_VERSION = 2
STATES = ("pending", "in_flight", "sent", "failed", "skipped", "uncertain")
SUPPRESSED = "the address is on the suppression list"
GUARANTEES = {False: "at-least-once", True: "at-most-once"}
IN_CLAUSE = 500  # keys per "IN (...)" lookup, well under SQLite's variable limit

_SCHEMA = f"""
CREATE TABLE meta (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    campaign_hash TEXT NOT NULL,
    list_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    imported_through INTEGER NOT NULL DEFAULT 0,
    finished_import INTEGER NOT NULL DEFAULT 0,
    guarantee TEXT                          -- 'at-least-once' | 'at-most-once', set at first run
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
    finished_at TEXT,
    retryable INTEGER                       -- failed rows: 1 transport/5xx/throttled, 0 refused
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
# ?1 state ?2 message_id ?3 error_code ?4 error ?5 attempts ?6 possible_duplicate ?7 final?
# ?8 attempted? ?9 now ?10 id ?11 retryable. Rows already in a final state are never touched:
# a late or repeated outcome cannot turn a sent row back into a pending one.
# possible_duplicate is never cleared. ?6 = 1 sets it; ?6 NULL ("not known") on a row given
# back to pending after this run wrote an attempt (?5 above the stored count) sets it too:
# a row never goes from in flight back to *plain* pending unless the caller says (?6 = 0)
# that every answer proved the message was refused. (SET expressions read the old values.)
RECORD = """
UPDATE rows SET state = ?1,
    message_id = coalesce(?2, message_id),
    error_code = CASE WHEN ?7 THEN ?3 ELSE coalesce(?3, error_code) END,
    error = CASE WHEN ?7 THEN ?4 ELSE coalesce(?4, error) END,
    attempts = max(attempts, ?5),
    possible_duplicate = CASE
        WHEN ?6 = 1 THEN 1
        WHEN ?6 IS NULL AND ?1 = 'pending' AND ?5 > attempts THEN 1
        ELSE possible_duplicate END,
    first_attempt_at = CASE WHEN ?8 THEN coalesce(first_attempt_at, ?9) ELSE first_attempt_at END,
    finished_at = CASE WHEN ?7 THEN ?9 ELSE finished_at END,
    retryable = CASE WHEN ?7 THEN ?11 ELSE retryable END
WHERE id = ?10 AND state IN ('pending', 'in_flight')
"""
_MIGRATE_1_TO_2 = (
    "ALTER TABLE meta ADD COLUMN guarantee TEXT",
    "ALTER TABLE rows ADD COLUMN retryable INTEGER",
)
_INTERRUPTED = "the run ended while this request was in flight: it may have been sent"
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


# -- the reserve: space given back when the disk fills -----------------------------------


def make_reserve(path: Path, size: int) -> Path | None:
    """Make sure ``path`` holds ``size`` bytes on disk (``None`` when ``size`` is 0)."""
    if size <= 0:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                try:
                    os.posix_fallocate(fd, 0, size)
                except OSError as exc:  # a file system without fallocate: write the bytes
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    os.pwrite(fd, b"\xff" * size, 0)
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise JournalError(
            f"{path}: cannot set aside {size >> 20} MiB beside the journal ({exc.strerror}); "
            "the disk is full or not writable: free some space and run again"
        ) from exc
    return path


def drop_reserve(path: Path | None) -> bool:
    """Delete the reserve to free its space; ``False`` if there was none left to give."""
    if path is None:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# -- opening: format and hash checks ----------------------------------------------------


def configure(conn: sqlite3.Connection, synchronous: str = "FULL") -> None:
    """Connection settings; run outside a transaction (journal_mode cannot change in one).

    ``FULL`` syncs the WAL on every commit, so a committed transaction survives power loss
    (``NORMAL`` survives only a crash of the process). Group commits make it nearly free.
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA cache_size = -32000")
    conn.execute("PRAGMA temp_store = MEMORY")


def prepare(
    conn: sqlite3.Connection,
    path: Path,
    campaign_hash: str,
    list_hash: str,
    on_change: str,
    at_most_once: bool,
    now: Callable[[], str],
) -> None:
    """Create the schema in an empty file, or check the format, hashes and delivery guarantee
    of an existing one (a format-1 journal is upgraded in place).

    Runs inside the caller's transaction. ``on_change`` is as for :meth:`Journal.open`.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    guarantee = GUARANTEES[at_most_once]
    if version == 0:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise JournalError(f"{path}: exists and is not a bulkmail journal")
        for statement in _SCHEMA.split(";"):  # no ";" inside a statement or comment
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT INTO meta (one, campaign_hash, list_hash, created_at, guarantee) "
            "VALUES (1, ?, ?, ?, ?)",
            (campaign_hash, list_hash, now(), guarantee),
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    if version == 1:  # before the stored guarantee: this run's becomes the campaign's
        for statement in _MIGRATE_1_TO_2:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    elif version != SCHEMA_VERSION:
        raise JournalError(
            f"{path}: journal format {version} is not supported "
            f"(this bulkmail writes format {SCHEMA_VERSION})"
        )
    if _check_hashes(conn, path, campaign_hash, list_hash, on_change, now):
        conn.execute("UPDATE meta SET guarantee = NULL")  # started over: a new campaign
    stored = conn.execute("SELECT guarantee FROM meta").fetchone()[0]
    if stored is None:
        conn.execute("UPDATE meta SET guarantee = ?", (guarantee,))
    elif stored != guarantee:
        flag = "with" if stored == GUARANTEES[True] else "without"
        raise JournalError(
            f"{path}: this campaign was started {stored} and its delivery guarantee is "
            f"fixed at the first run; run again {flag} --at-most-once to continue. To change "
            "it, start a new journal (--journal NEW_PATH): everyone is sent to again."
        )


def _check_hashes(
    conn: sqlite3.Connection,
    path: Path,
    campaign_hash: str,
    list_hash: str,
    on_change: str,
    now: Callable[[], str],
) -> bool:
    """Compare the stored hashes; ``True`` when ``on_change="restart"`` emptied the journal."""
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
        return False
    if on_change == "restart":
        for table in ("rows", "skips", "suppressed"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute(
            "UPDATE meta SET campaign_hash = ?, list_hash = ?, created_at = ?, "
            "imported_through = 0, finished_import = 0",
            (campaign_hash, list_hash, now()),
        )
        return True
    if on_change == "force":
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
        return False
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
    conn: sqlite3.Connection, at_most_once: bool, retry_failed: str, now: Callable[[], str]
) -> tuple[int, int, int, int, int]:
    """Settle the rows at open: ``(ambiguous, requeued, uncertain, retried, held)``.

    Rows left ``in_flight`` by a run that died are possibly sent: ``pending`` flagged
    ``possible_duplicate``, or ``uncertain`` at most once. ``retry_failed`` (``"none"``,
    ``"retryable"``, ``"all"``) puts failed rows back to ``pending`` (keeping their attempts,
    their last error and their flag). At most once, any pending row flagged
    ``possible_duplicate`` (by an older bulkmail, or failed and retried) is held as
    ``uncertain``: it is never sent again.
    """
    ambiguous: int = conn.execute("SELECT count(*) FROM rows WHERE state = 'in_flight'").fetchone()[
        0
    ]
    requeued = uncertain = 0
    if ambiguous and at_most_once:
        uncertain = conn.execute(
            "UPDATE rows SET state = 'uncertain', finished_at = ?, "
            "error_code = coalesce(error_code, 'interrupted'), error = coalesce(error, "
            f"{_INTERRUPTED!r}) WHERE state = 'in_flight'",
            (now(),),
        ).rowcount
    elif ambiguous:
        requeued = conn.execute(
            "UPDATE rows SET state = 'pending', possible_duplicate = 1 WHERE state = 'in_flight'"
        ).rowcount
    retried = 0
    if retry_failed != "none":
        which = "" if retry_failed == "all" else " AND retryable = 1"
        retried = conn.execute(
            f"UPDATE rows SET state = 'pending', finished_at = NULL WHERE state = 'failed'{which}"
        ).rowcount
    held = 0
    if at_most_once:
        held = conn.execute(
            "UPDATE rows SET state = 'uncertain', finished_at = ?, "
            "error_code = coalesce(error_code, 'possible_duplicate'), error = coalesce(error, "
            "'an earlier attempt may have been sent, and this campaign sends at most once') "
            "WHERE state = 'pending' AND possible_duplicate = 1",
            (now(),),
        ).rowcount
    return ambiguous, requeued, uncertain, retried, held


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


def write_results(conn: sqlite3.Connection, path: Path) -> int:
    """Stream one JSON line per list row to ``path`` atomically; see Journal.export_results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    written = 0
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            cursor = conn.execute(_EXPORT)  # one statement: one snapshot
            while batch := cursor.fetchmany(2000):
                for row in batch:
                    record = dict(zip(_EXPORT_KEYS, row, strict=True))
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
