"""Durable per-recipient state: one SQLite file (WAL) that keeps exact books for a campaign.

Amazon SES and Alibaba DirectMail take no idempotency key, so the journal is what makes a
run resumable without losing a recipient or silently sending one twice::

    pending ──mark_in_flight──► in_flight ──record──► sent | failed | skipped | uncertain
       ▲                            │
       └──── record("pending") ─────┘   (given back: definitely not sent)

A row found ``in_flight`` when the journal is opened was possibly sent by a run that died:
it goes back to ``pending`` flagged ``possible_duplicate`` or, with ``at_most_once``, is held
as ``uncertain`` and never sent again.

The list is streamed in with :meth:`Journal.add_rows` while sending goes on; the UNIQUE index
on the dedupe key *is* the duplicate detector (no in-memory set of addresses). List rows that
will never be sent (duplicates, invalid addresses, suppressed keys) live in a second table,
``skips``, keyed by their line. A recipient row's id *is* its list line number, so id order
is line order and the results export is a streaming merge of two rowid-ordered tables.

Every public mutating method is one transaction. ``synchronous=NORMAL`` in WAL mode survives
a crash or SIGKILL of the process (what the tests exercise); surviving *power loss* would
need ``synchronous=FULL`` at a cost on every commit. Nothing secret is stored.

    >>> journal, recovery = Journal.open(path, campaign_hash="c1", list_hash="l1")  # doctest: +SKIP
    >>> with journal:                                                              # doctest: +SKIP
    ...     rows = journal.add_rows(recipients, rejected, through_line=1000)
    ...     journal.mark_in_flight([r.id for r in rows])
    ...     journal.record([RowOutcome(r.id, "sent", message_id="m-1") for r in rows])
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, TypedDict

import orjson

from bulkmail.errors import JournalError

SCHEMA_VERSION = 1
#: Skip codes that are expected housekeeping rather than a problem with the list.
BENIGN_SKIP_CODES = frozenset({"duplicate", "suppressed"})
STATES = ("pending", "in_flight", "sent", "failed", "skipped", "uncertain")
_FINAL = frozenset({"sent", "failed", "skipped", "uncertain"})
_ATTEMPTED = frozenset({"sent", "failed", "uncertain"})
_SUPPRESSED = "the address is on the suppression list"
_IN_CLAUSE = 500  # keys per "IN (...)" lookup, well under SQLite's variable limit

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

_INSERT_ROW = "INSERT INTO rows (id, email, key, fields) VALUES (?, ?, ?, ?)"
_INSERT_SKIP = "INSERT OR IGNORE INTO skips (line, email, code, reason) VALUES (?, ?, ?, ?)"
_MARK = (
    "UPDATE rows SET state = 'in_flight', first_attempt_at = coalesce(first_attempt_at, ?) "
    "WHERE id = ? AND state = 'pending'"
)
# ?1 state ?2 message_id ?3 error_code ?4 error ?5 attempts ?6 possible_duplicate (NULL: keep)
# ?7 final? ?8 attempted? ?9 now ?10 id. Rows already in a final state are never touched:
# a late or repeated outcome cannot turn a sent row back into a pending one.
_RECORD = """
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
_PENDING_COLUMNS = "id, email, fields, possible_duplicate, attempts"
_EXPORT = """
SELECT id, email, state, message_id, error_code, error, attempts, possible_duplicate,
       first_attempt_at, finished_at FROM rows
UNION ALL
SELECT line, email, 'skipped', NULL, code, reason, 0, 0, NULL, NULL FROM skips
ORDER BY 1
"""
_EXPORT_KEYS = ("line", "email", "status", "message_id", "error_code", "error", "attempts",
                "possible_duplicate", "first_attempt_at", "finished_at")


class RecipientLike(Protocol):
    """What :meth:`Journal.add_rows` reads from a :class:`bulkmail.recipients.Recipient`."""

    @property
    def line(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def fields(self) -> Mapping[str, Any]: ...


class RejectedLike(Protocol):
    """What :meth:`Journal.add_rows` reads from a :class:`bulkmail.recipients.Rejected`."""

    @property
    def line(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A recipient to send to; ``id`` is the journal's handle (equal to ``line``)."""

    id: int
    line: int
    email: str
    fields: Mapping[str, Any]
    possible_duplicate: bool
    attempts: int


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What happened to one row. ``state="pending"`` gives it back: definitely not sent."""

    id: int
    state: str
    message_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    attempts: int = 0  # the row's total so far; the journal keeps the maximum it has seen
    possible_duplicate: bool | None = None  # None: leave as is


@dataclass(frozen=True, slots=True)
class Recovery:
    """Rows found ``in_flight`` at open: the last run died while they were being sent."""

    ambiguous: int
    requeued: int
    uncertain: int


class SkipRow(TypedDict):
    line: int
    email: str
    code: str
    reason: str


class Journal:
    """The journal of one campaign. Synchronous; use it from one thread at a time."""

    def __init__(
        self, conn: sqlite3.Connection, lock_fd: int, path: Path, clock: Callable[[], float]
    ) -> None:
        self._conn = conn
        self._lock_fd = lock_fd
        self.path = path
        self._clock = clock
        self._imported_through = 0
        self._finished_import = False
        self._has_suppressed = False

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        campaign_hash: str,
        list_hash: str,
        on_change: Literal["refuse", "restart", "force"] = "refuse",
        at_most_once: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> tuple[Journal, Recovery]:
        """Open (or create) the journal at ``path``, lock it, and recover in-flight rows.

        If the campaign or list hash differs from the stored one: ``"refuse"`` raises
        :class:`JournalError`, ``"restart"`` empties the journal, ``"force"`` stores the new
        hashes and continues (already-sent keys are still never sent again).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(Path(f"{path}.lock"), path)
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            _unlock(lock_fd)
            raise JournalError(f"{path}: cannot open the journal: {exc}") from exc
        journal = cls(conn, lock_fd, path, clock)
        try:
            recovery = journal._setup(campaign_hash, list_hash, on_change, at_most_once)
        except BaseException as exc:
            journal.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise JournalError(f"{path}: not a usable bulkmail journal: {exc}") from exc
            raise
        return journal, recovery

    def _setup(
        self, campaign_hash: str, list_hash: str, on_change: str, at_most_once: bool
    ) -> Recovery:
        conn = self._conn
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # FULL would be needed for power loss
        conn.execute("PRAGMA cache_size = -32000")
        conn.execute("PRAGMA temp_store = MEMORY")
        with self._tx():
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise JournalError(f"{self.path}: exists and is not a bulkmail journal")
                self._create(campaign_hash, list_hash)
            elif version != SCHEMA_VERSION:
                raise JournalError(
                    f"{self.path}: journal format {version} is not supported "
                    f"(this bulkmail writes format {SCHEMA_VERSION})"
                )
            else:
                self._check_hashes(campaign_hash, list_hash, on_change)
            recovery = self._recover(at_most_once)
            row = conn.execute("SELECT imported_through, finished_import FROM meta").fetchone()
            self._imported_through, self._finished_import = row[0], bool(row[1])
            self._has_suppressed = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM suppressed)"
            ).fetchone()[0] == 1
        return recovery

    def _create(self, campaign_hash: str, list_hash: str) -> None:
        for statement in _SCHEMA.split(";"):  # no ";" inside a statement or comment
            if statement.strip():
                self._conn.execute(statement)
        self._conn.execute(
            "INSERT INTO meta (one, campaign_hash, list_hash, created_at) VALUES (1, ?, ?, ?)",
            (campaign_hash, list_hash, self._now()),
        )
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_hashes(self, campaign_hash: str, list_hash: str, on_change: str) -> None:
        old_campaign, old_list = self._conn.execute(
            "SELECT campaign_hash, list_hash FROM meta"
        ).fetchone()
        changed = [
            what
            for what, differs in (
                ("the campaign content (subject, body, sender or settings)",
                 old_campaign != campaign_hash),
                ("the recipient list (or suppression list)", old_list != list_hash),
            )
            if differs
        ]
        if not changed:
            return
        if on_change == "restart":
            for table in ("rows", "skips", "suppressed"):
                self._conn.execute(f"DELETE FROM {table}")
            self._conn.execute(
                "UPDATE meta SET campaign_hash = ?, list_hash = ?, created_at = ?, "
                "imported_through = 0, finished_import = 0",
                (campaign_hash, list_hash, self._now()),
            )
        elif on_change == "force":
            # A changed list may have grown: read it again after imported_through. Keys
            # already in the journal are still recognised as duplicates, never resent.
            self._conn.execute(
                "UPDATE meta SET campaign_hash = ?, list_hash = ?, "
                "finished_import = finished_import AND ?",
                (campaign_hash, list_hash, old_list == list_hash),
            )
        else:
            raise JournalError(
                f"{self.path}: {' and '.join(changed)} changed since this journal was "
                "started. Run again with --restart to start over (everyone is sent to "
                "again) or --force to continue with the new content (recipients already "
                "sent to are not sent to again)."
            )

    def _recover(self, at_most_once: bool) -> Recovery:
        ambiguous = self._conn.execute(
            "SELECT count(*) FROM rows WHERE state = 'in_flight'"
        ).fetchone()[0]
        if not ambiguous:
            return Recovery(0, 0, 0)
        if at_most_once:
            self._conn.execute(
                "UPDATE rows SET state = 'uncertain', finished_at = ?, "
                "error_code = coalesce(error_code, 'interrupted'), error = coalesce(error, "
                "'the run ended while this request was in flight: it may have been sent') "
                "WHERE state = 'in_flight'",
                (self._now(),),
            )
            return Recovery(ambiguous, 0, ambiguous)
        self._conn.execute(
            "UPDATE rows SET state = 'pending', possible_duplicate = 1 WHERE state = 'in_flight'"
        )
        return Recovery(ambiguous, ambiguous, 0)

    def close(self) -> None:
        """Close the database (checkpointing the WAL) and release the lock. Idempotent."""
        if self._lock_fd < 0:
            return
        try:
            self._conn.close()
        finally:
            _unlock(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- import ---------------------------------------------------------------------------

    @property
    def imported_through(self) -> int:
        """The last list line fully imported (0 for a new journal)."""
        return self._imported_through

    @property
    def finished_import(self) -> bool:
        return self._finished_import

    def load_suppressed(self, keys: Iterable[str]) -> int:
        """Store suppressed addresses (one transaction); returns how many were new.

        Pending rows already imported with such a key become ``skipped`` (``suppressed``).
        Suppression ignores case in the *whole* address: someone who unsubscribed as
        ``Ana@x.com`` is never mailed as ``ana@x.com``, even though dedupe keeps the local
        part's case.
        """
        with self._tx():
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO suppressed (key) VALUES (?)", ((k.lower(),) for k in keys)
            )
            added = self._conn.total_changes - before
            if added:
                self._conn.execute(
                    "UPDATE rows SET state = 'skipped', error_code = 'suppressed', "
                    "error = ?, finished_at = ? "
                    "WHERE state = 'pending' AND lower(key) IN (SELECT key FROM suppressed)",
                    (_SUPPRESSED, self._now()),
                )
        self._has_suppressed = self._has_suppressed or added > 0
        return added

    def add_rows(
        self,
        recipients: Sequence[RecipientLike],
        rejected: Sequence[RejectedLike],
        *,
        through_line: int,
        last: bool = False,
    ) -> list[PendingRow]:
        """Import one chunk of the list in one transaction; return the new pending rows.

        Lines at or below :attr:`imported_through` were imported already and are ignored,
        so re-adding a chunk after a crash changes nothing.
        """
        done = self._imported_through
        first: dict[str, RecipientLike] = {}  # key -> its first recipient in this chunk
        again: list[RecipientLike] = []  # later recipients with a key seen in this chunk
        seen_lines: set[int] = set()
        for r in sorted(recipients, key=_line):
            if r.line <= done or r.line in seen_lines:
                continue
            seen_lines.add(r.line)
            if r.key in first:
                again.append(r)
            else:
                first[r.key] = r
        skips: list[tuple[int, str, str, str]] = []
        with self._tx():
            existing = self._lookup("SELECT key, id FROM rows WHERE key IN ({})", first)
            suppressed = (
                self._lookup(
                    "SELECT key, 1 FROM suppressed WHERE key IN ({})",
                    {key.lower(): None for key in first},
                )
                if self._has_suppressed
                else {}
            )
            new: list[RecipientLike] = []
            for key, r in first.items():
                if key.lower() in suppressed:
                    skips.append((r.line, r.email, "suppressed", _SUPPRESSED))
                elif key in existing:
                    if existing[key] != r.line:  # the same line again is not a duplicate
                        skips.append(_duplicate(r, existing[key]))
                else:
                    new.append(r)
            for r in again:
                if r.key.lower() in suppressed:
                    skips.append((r.line, r.email, "suppressed", _SUPPRESSED))
                else:
                    skips.append(_duplicate(r, existing.get(r.key, first[r.key].line)))
            try:
                self._conn.executemany(
                    _INSERT_ROW, ((r.line, r.email, r.key, _dump(r.fields)) for r in new)
                )
            except sqlite3.IntegrityError as exc:
                raise JournalError(
                    f"{self.path}: two different recipients claim the same list line ({exc})"
                ) from exc
            self._conn.executemany(_INSERT_SKIP, skips)
            self._conn.executemany(
                _INSERT_SKIP,
                ((x.line, x.email, x.code, x.reason) for x in rejected if x.line > done),
            )
            through = max(done, through_line)
            finished = self._finished_import or last
            self._conn.execute(
                "UPDATE meta SET imported_through = ?, finished_import = ?", (through, finished)
            )
        self._imported_through, self._finished_import = through, finished
        new.sort(key=_line)
        return [PendingRow(r.line, r.line, r.email, r.fields, False, 0) for r in new]

    def _lookup(self, sql: str, keys: Mapping[str, object]) -> dict[str, int]:
        found: dict[str, int] = {}
        batch = list(keys)
        for start in range(0, len(batch), _IN_CLAUSE):
            part = batch[start : start + _IN_CLAUSE]
            query = sql.format(",".join("?" * len(part)))
            found.update(self._conn.execute(query, part).fetchall())
        return found

    # -- sending --------------------------------------------------------------------------

    def pending(self, *, after_id: int = 0, limit: int = 1000) -> list[PendingRow]:
        """Pending rows with ``id > after_id`` in id (= line) order, at most ``limit``."""
        return self._select("pending", after_id, limit)

    def uncertain(self, limit: int = 100) -> list[PendingRow]:
        """Rows possibly sent but not known to be (held by an at-most-once run)."""
        return self._select("uncertain", 0, limit)

    def _select(self, state: str, after_id: int, limit: int) -> list[PendingRow]:
        cursor = self._conn.execute(
            f"SELECT {_PENDING_COLUMNS} FROM rows WHERE state = ? AND id > ? ORDER BY id LIMIT ?",
            (state, after_id, limit),
        )
        return [
            PendingRow(i, i, email, orjson.loads(fields), bool(dup), attempts)
            for i, email, fields, dup, attempts in cursor
        ]

    def mark_in_flight(self, ids: Sequence[int]) -> None:
        """Commit that these pending rows are about to be sent (call BEFORE sending).

        Raises :class:`JournalError` (and changes nothing) if any of them is not pending:
        sending it could repeat a recipient.
        """
        now = self._now()
        with self._tx():
            before = self._conn.total_changes
            self._conn.executemany(_MARK, ((now, i) for i in ids))
            marked = self._conn.total_changes - before
            if marked != len(ids):
                raise JournalError(
                    f"{self.path}: {len(ids) - marked} of {len(ids)} rows to mark in flight "
                    "are not pending (already sent, in flight or unknown)"
                )

    def record(self, outcomes: Sequence[RowOutcome]) -> None:
        """Record outcomes in one transaction. Rows already final are left untouched."""
        now = self._now()
        with self._tx():
            self._conn.executemany(
                _RECORD,
                (
                    (
                        o.state, o.message_id, o.error_code, o.error, o.attempts,
                        o.possible_duplicate, o.state in _FINAL,
                        o.state in _ATTEMPTED or o.attempts > 0, now, o.id,
                    )
                    for o in outcomes
                ),
            )

    # -- reading the books ----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per state (skipped list rows included), ``possible_duplicate`` and ``total``."""
        counts = dict.fromkeys(STATES, 0)
        conn = self._conn
        counts.update(conn.execute("SELECT state, count(*) FROM rows GROUP BY state").fetchall())
        counts["skipped"] += conn.execute("SELECT count(*) FROM skips").fetchone()[0]
        counts["possible_duplicate"] = conn.execute(
            "SELECT count(*) FROM rows WHERE possible_duplicate = 1"
        ).fetchone()[0]
        counts["total"] = sum(counts[s] for s in STATES)
        return counts

    def problem_skip_count(self, benign: Iterable[str] = BENIGN_SKIP_CODES) -> int:
        """Skipped list rows whose code is not housekeeping (bad rows, render problems)."""
        codes = sorted(set(benign))
        marks = ",".join("?" * len(codes))
        n_skips = self._conn.execute(
            f"SELECT count(*) FROM skips WHERE code NOT IN ({marks})", codes
        ).fetchone()[0]
        n_rows = self._conn.execute(
            "SELECT count(*) FROM rows WHERE state = 'skipped' "
            f"AND coalesce(error_code, '') NOT IN ({marks})",
            codes,
        ).fetchone()[0]
        return int(n_skips + n_rows)

    def skips(self, codes: Iterable[str] | None = None) -> Iterator[SkipRow]:
        """Stream the skipped list rows (optionally only those with one of ``codes``)."""
        sql, args = "SELECT line, email, code, reason FROM skips", []
        if codes is not None:
            args = sorted(set(codes))
            sql += f" WHERE code IN ({','.join('?' * len(args))})"
        for line, email, code, reason in self._conn.execute(sql + " ORDER BY line", args):
            yield SkipRow(line=line, email=email, code=code, reason=reason)

    def export_results(self, path: Path) -> int:
        """Write one JSON line per list row, in line order, atomically; return the count.

        The file is streamed to a temporary file beside ``path`` from one consistent
        read of the journal, flushed to disk, then renamed over ``path``.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        written = 0
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:
                cursor = self._conn.execute(_EXPORT)  # one statement: one snapshot
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

    # -- helpers --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _now(self) -> str:
        stamp = datetime.fromtimestamp(self._clock(), UTC)
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _line(item: RecipientLike) -> int:
    return item.line


def _duplicate(r: RecipientLike, first_line: int) -> tuple[int, str, str, str]:
    return (r.line, r.email, "duplicate", f"duplicate of line {first_line}")


def _dump(fields: Mapping[str, Any]) -> bytes:
    return orjson.dumps(fields if isinstance(fields, dict) else dict(fields))


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(lock_path: Path, journal: Path) -> int:
    """Take an exclusive flock on ``lock_path`` and write our pid into it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise JournalError(
            f"{journal} is in use by another bulkmail run (pid {holder})"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


__all__ = [
    "BENIGN_SKIP_CODES",
    "Journal",
    "PendingRow",
    "Recovery",
    "RowOutcome",
    "SkipRow",
]
