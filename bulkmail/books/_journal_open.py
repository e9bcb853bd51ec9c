"""Opening a journal: the pid lock beside the file, the reserve of disk space, connection
settings, the format/hash/guarantee checks, and the settling of rows left by earlier runs.

Private to :mod:`bulkmail.books.journal`; the schema and statements are in
:mod:`._journal_store`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from bulkmail.books._journal_store import (
    GUARANTEES,
    INTERRUPTED,
    MIGRATE_1_TO_2,
    SCHEMA,
    SCHEMA_VERSION,
)
from bulkmail.errors import JournalError

# -- the file lock ----------------------------------------------------------------------


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


def require_sqlite(conn: sqlite3.Connection, path: Path) -> None:
    """The journal's batch statements need UPDATE ... FROM (SQLite 3.33) and JSON."""
    try:
        if sqlite3.sqlite_version_info < (3, 33, 0):
            raise sqlite3.OperationalError("too old")
        conn.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.OperationalError as exc:
        raise JournalError(
            f"{path}: the journal needs SQLite 3.33 or later with its JSON functions; this "
            f"Python has SQLite {sqlite3.sqlite_version} ({exc})"
        ) from exc


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
        for statement in SCHEMA.split(";"):  # no ";" inside a statement or comment
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
        for statement in MIGRATE_1_TO_2:
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
            f"{INTERRUPTED!r}) WHERE state = 'in_flight'",
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
