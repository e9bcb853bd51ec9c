"""Durable per-recipient state: one SQLite file (WAL) that keeps exact books for a campaign.

Amazon SES and Alibaba DirectMail take no idempotency key, so the journal is what makes a
run resumable without losing a recipient or silently sending one twice::

    pending ──mark_in_flight──► in_flight ──record──► sent | failed | skipped | uncertain
       ▲                            │
       └──── record("pending") ─────┘   (given back: flagged unless proven not sent)

A row found ``in_flight`` when the journal is opened was possibly sent by a run that died:
it goes back to ``pending`` flagged ``possible_duplicate`` or, with ``at_most_once``, is held
as ``uncertain`` and never sent again.

The list is streamed in with :meth:`Journal.add_rows` while sending goes on; the UNIQUE index
on the dedupe key *is* the duplicate detector (no in-memory set of addresses). List rows that
will never be sent (duplicates, invalid addresses, suppressed keys) live in a second table,
``skips``, keyed by their line. A recipient row's id *is* its list line number, so id order
is line order and the results export is a streaming merge of two rowid-ordered tables.

Every public mutating method is one transaction, and durable when it returns: WAL mode with
``synchronous=FULL`` syncs the log on every commit, so a committed step survives SIGKILL,
a crash *and* power loss (group commits make FULL nearly free). What survives what:

- SIGKILL, crash, power loss: every committed step. A row is committed ``in_flight`` before
  its request leaves; found so at open it is possibly sent (see above). A row never goes from
  in flight back to *plain* pending unless the caller says every answer proved it refused
  (``RowOutcome.possible_duplicate=False``); a give-back after an attempt keeps the flag.
- A failed write (I/O error, failed COMMIT): rolled back, nothing half-done; the caller
  keeps its batch and may try again.
- A full disk: ``RESERVE_BYTES`` set aside in ``PATH.reserve`` at open are given back so that
  :meth:`Journal.record` can still store the answers to requests already sent; from then on
  nothing new is marked in flight or imported (:class:`JournalFull`), and the reserve is set
  aside again by the next open.

The delivery guarantee (``at_most_once``) is stored at the first run and refused if a later
run differs; ``retry_failed`` at open puts failed rows back to pending (the ``retryable``
column says which failed for a reason a later run may not meet). Nothing secret is stored.

    >>> journal, recovery = Journal.open(path, campaign_hash="c1", list_hash="l1")  # doctest: +SKIP
    >>> with journal:                                                              # doctest: +SKIP
    ...     rows = journal.add_rows(recipients, rejected, through_line=1000)
    ...     journal.mark_in_flight([r.id for r in rows])
    ...     journal.record([RowOutcome(r.id, "sent", message_id="m-1") for r in rows])
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, TypedDict

import orjson

from bulkmail.books import _journal_open as opening
from bulkmail.books import _journal_store as store
from bulkmail.books import lockfile
from bulkmail.books._journal_store import SUPPRESSED
from bulkmail.books._results_file import ResultsStream, write_results
from bulkmail.books.base import (  # timestamp: re-exported, the other books share it
    BENIGN_SKIP_CODES,
    PendingRow,
    Recovery,
    RowOutcome,
    timestamp,
)
from bulkmail.errors import JournalError

#: Bytes set aside beside the journal, given back when the disk fills (see Journal.record).
RESERVE_BYTES = 4 << 20
RetryFailed = Literal["none", "retryable", "all"]


class RecipientLike(Protocol):
    """What :meth:`Journal.add_rows` reads from a :class:`bulkmail.input.recipients.Recipient`."""

    @property
    def line(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def fields(self) -> Mapping[str, Any]: ...


class RejectedLike(Protocol):
    """What :meth:`Journal.add_rows` reads from a :class:`bulkmail.input.recipients.Rejected`."""

    @property
    def line(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def reason(self) -> str: ...


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
        self._reserve: Path | None = None
        self._full: JournalFull | None = None  # once the disk filled: no new work

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
        retry_failed: RetryFailed = "none",
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        reserve: int = RESERVE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> tuple[Journal, Recovery]:
        """Open (or create) the journal at ``path``, lock it, and settle its rows.

        If the campaign or list hash differs from the stored one: ``"refuse"`` raises
        :class:`JournalError`, ``"restart"`` empties the journal, ``"force"`` stores the new
        hashes and continues (already-sent keys are still never sent again).

        ``at_most_once`` is stored at the first run and fixed for the campaign: another
        value later raises :class:`JournalError`. ``retry_failed`` puts failed rows back to
        pending: ``"retryable"`` those that failed for a reason a later run may not meet
        (transport, 5xx, throttling), ``"all"`` also those the provider refused. ``reserve``
        bytes are set aside in ``PATH.reserve`` and given back when the disk fills, so the
        outcomes of requests already sent can still be recorded.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = lockfile.lock(Path(f"{path}.lock"), path)
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            lockfile.unlock(lock_fd)
            raise JournalError(f"{path}: cannot open the journal: {exc}") from exc
        journal = cls(conn, lock_fd, path, clock)
        try:
            journal._reserve = opening.make_reserve(Path(f"{path}.reserve"), reserve)
            opening.require_sqlite(conn, path)
            opening.configure(conn, synchronous)
            with journal._tx():
                opening.prepare(
                    conn, path, campaign_hash, list_hash, on_change, at_most_once, journal._now
                )
                recovery = Recovery(
                    *opening.recover(conn, at_most_once, retry_failed, journal._now)
                )
                (journal._imported_through, journal._finished_import, journal._has_suppressed) = (
                    opening.read_meta(conn)
                )
        except BaseException as exc:
            journal.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise JournalError(f"{path}: not a usable bulkmail journal: {exc}") from exc
            raise
        return journal, recovery

    def close(self) -> None:
        """Close the database (checkpointing the WAL) and release the lock. Idempotent."""
        if self._lock_fd < 0:
            return
        try:
            self._conn.close()
        finally:
            lockfile.unlock(self._lock_fd)
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
                    (SUPPRESSED, self._now()),
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
        if self._full is not None:  # the disk filled: nothing new, the reserve is for answers
            raise self._full
        done = self._imported_through
        first, again = store.partition(recipients, done)
        skips: list[tuple[int, str, str, str]] = []
        with self._tx():
            conn = self._conn
            existing = store.lookup(conn, "SELECT key, id FROM rows WHERE key IN ({})", first)
            suppressed = (
                store.lookup(
                    conn,
                    "SELECT key, 1 FROM suppressed WHERE key IN ({})",
                    {key.lower(): None for key in first},
                )
                if self._has_suppressed
                else {}
            )
            new: list[RecipientLike] = []
            for r in [*first.values(), *again]:
                if r.key.lower() in suppressed:
                    skips.append((r.line, r.email, "suppressed", SUPPRESSED))
                elif first[r.key] is not r:  # a later line with a key seen in this chunk
                    skips.append(_duplicate(r, existing.get(r.key, first[r.key].line)))
                elif r.key not in existing:
                    new.append(r)
                elif existing[r.key] != r.line:  # the same line again is not a duplicate
                    skips.append(_duplicate(r, existing[r.key]))
            try:
                if new:
                    conn.execute(store.INSERT_ROWS, (store.rows_json(new),))
            except sqlite3.IntegrityError as exc:
                raise JournalError(
                    f"{self.path}: two different recipients claim the same list line ({exc})"
                ) from exc
            skips.extend((x.line, x.email, x.code, x.reason) for x in rejected if x.line > done)
            if skips:
                conn.execute(store.INSERT_SKIPS, (orjson.dumps(skips),))
            through = max(done, through_line)
            finished = self._finished_import or last
            conn.execute(
                "UPDATE meta SET imported_through = ?, finished_import = ?", (through, finished)
            )
        self._imported_through, self._finished_import = through, finished
        new.sort(key=store.line_of)
        return [PendingRow(r.line, r.line, r.email, r.fields, False, 0) for r in new]

    # -- sending --------------------------------------------------------------------------

    def pending(self, *, after_id: int = 0, limit: int = 1000) -> list[PendingRow]:
        """Pending rows with ``id > after_id`` in id (= line) order, at most ``limit``."""
        return self._select("pending", after_id, limit)

    def _select(self, state: str, after_id: int, limit: int) -> list[PendingRow]:
        cursor = self._conn.execute(store.SELECT_STATE, (state, after_id, limit))
        return [
            PendingRow(i, i, email, orjson.loads(fields), bool(dup), attempts)
            for i, email, fields, dup, attempts in cursor
        ]

    def mark_in_flight(self, ids: Sequence[int]) -> None:
        """Commit that these pending rows are about to be sent (call BEFORE sending).

        Raises :class:`JournalError` (and changes nothing) if any of them is not pending:
        sending it could repeat a recipient.
        """
        if self._full is not None:
            raise self._full
        now = self._now()
        with self._tx():
            before = self._conn.total_changes
            self._conn.execute(store.MARK, (now, orjson.dumps(list(ids))))
            marked = self._conn.total_changes - before
            if marked != len(ids):
                raise JournalError(
                    f"{self.path}: {len(ids) - marked} of {len(ids)} rows to mark in flight "
                    "are not pending (already sent, in flight or unknown)"
                )

    def record(self, outcomes: Sequence[RowOutcome]) -> None:
        """Record outcomes in one transaction. Rows already final are left untouched.

        On a full disk the reserve is given back and the transaction tried once more: these
        are answers to requests already sent, and losing them would send them again.
        """
        try:
            self._record(outcomes)
        except JournalFull:
            if not opening.drop_reserve(self._reserve):
                raise
            self._reserve = None
            self._record(outcomes)

    def _record(self, outcomes: Sequence[RowOutcome]) -> None:
        now = self._now()
        with self._tx():
            for batch in store.record_batches(outcomes):
                self._conn.execute(store.RECORD, (batch, now))

    # -- reading the books ----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per state (skipped list rows included), ``possible_duplicate`` and ``total``."""
        return store.count_states(self._conn)

    def problem_skip_count(self, benign: Iterable[str] = BENIGN_SKIP_CODES) -> int:
        """Skipped list rows whose code is not housekeeping (bad rows, render problems)."""
        return store.count_problem_skips(self._conn, benign)

    def skips(self, codes: Iterable[str] | None = None) -> Iterator[SkipRow]:
        """Stream the skipped list rows (optionally only those with one of ``codes``)."""
        sql, args = "SELECT line, email, code, reason FROM skips", []
        if codes is not None:
            args = sorted(set(codes))
            sql += f" WHERE code IN ({','.join('?' * len(args))})"
        for line, email, code, reason in self._conn.execute(sql + " ORDER BY line", args):
            yield SkipRow(line=line, email=email, code=code, reason=reason)

    def export_results(
        self, path: Path, *, events: Path | None = None, stream: ResultsStream | None = None
    ) -> int:
        """Write one JSON line per list row, in line order, atomically; return the count.

        The lines are written to a hidden file beside ``path`` (the journal's own thread
        reads them, so nothing changes meanwhile), flushed to disk, then renamed over
        ``path``. With ``events``
        (an event store of ``bulkmail events``), each line also says what SES reported
        for its message (``event``: ``complained``, ``bounced`` (permanent), ``rejected``,
        ``soft_bounced``, ``delayed``, ``delivered`` or null). With a ``stream`` to
        ``path`` (see :meth:`stream_results`), only the lines it has not written yet are.
        """
        try:
            if stream is not None:
                if stream.path == Path(path) and events is None and not stream.broken:
                    return stream.finish()
                stream.discard()
            return write_results(self._conn, Path(path), events=events)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"{path}: cannot write the results file: {exc}") from exc

    def stream_results(self, path: Path) -> ResultsStream:
        """A results file to ``path`` written as rows become final (call its ``advance``
        after :meth:`record`), finished by :meth:`export_results` without ``events``."""
        return ResultsStream(self._conn, Path(path), lambda: self._imported_through)

    # -- helpers --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself fails (disk full, I/O error): SQLite may leave the
                # transaction open, and the next BEGIN would fail or commit it half-done.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:  # disk full, I/O error: ours to report
            if (
                getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                or getattr(exc, "errno", None) == errno.ENOSPC
                or "disk is full" in str(exc)
            ):
                self._full = JournalFull(
                    f"{self.path}: the disk holding the journal is full ({exc}); stopped "
                    "sending (every answer received is recorded); free some space and run "
                    "again to send the rest"
                )
                raise self._full from exc
            raise JournalError(f"{self.path}: the journal cannot be written: {exc}") from exc

    def _now(self) -> str:
        return timestamp(self._clock())


class JournalFull(JournalError):
    """The journal could not be written because its disk is full."""


def _duplicate(r: RecipientLike, first_line: int) -> tuple[int, str, str, str]:
    return (r.line, r.email, "duplicate", f"duplicate of line {first_line}")


__all__ = [
    "BENIGN_SKIP_CODES",
    "RESERVE_BYTES",
    "Journal",
    "JournalFull",
    "PendingRow",
    "Recovery",
    "RetryFailed",
    "RowOutcome",
    "SkipRow",
    "timestamp",
]
