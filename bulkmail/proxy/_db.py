"""The proxy journal's storage: one SQLite file, messages and their recipients.

Synchronous; :class:`~bulkmail.proxy.store.SqliteQueue` runs every call in one thread.
WAL; an accept commits with ``synchronous = FULL``: on disk (fsync) when it returns, so an
accepted message survives a SIGKILL or a power cut. Nothing secret is stored: the client's
access key id names the client, never its secret.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from bulkmail.books.base import FINAL_STATES, RowOutcome
from bulkmail.books.journal import timestamp
from bulkmail.books.lockfile import lock, unlock
from bulkmail.errors import JournalError

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    mid TEXT NOT NULL UNIQUE,
    client TEXT NOT NULL,
    api TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    size INTEGER NOT NULL,
    spec BLOB NOT NULL,
    raw BLOB
);
CREATE TABLE IF NOT EXISTS recipients (
    id INTEGER PRIMARY KEY,
    message INTEGER NOT NULL REFERENCES messages(id),
    client TEXT NOT NULL,
    lane INTEGER NOT NULL,
    email TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    possible_duplicate INTEGER NOT NULL DEFAULT 0,
    upstream_id TEXT,
    error_code TEXT,
    error TEXT,
    first_attempt_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS recipients_queue ON recipients(client, lane, id)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS recipients_message ON recipients(message);
CREATE INDEX IF NOT EXISTS recipients_sent ON recipients(finished_at) WHERE state = 'sent';
"""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One proxy message to commit: its id, owner, content and recipients."""

    mid: str
    client: str
    api: str
    spec: dict[str, Any]
    raw: bytes | None
    recipients: Sequence[str]
    lane: int


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """A pending recipient as the intake reads it."""

    id: int
    message: int
    client: str
    lane: int
    email: str
    possible_duplicate: bool
    attempts: int


class ProxyDb:
    """The proxy journal file. Open with :meth:`open`; one thread uses it.

    >>> db = ProxyDb.open(Path("proxy.journal.sqlite"))        # doctest: +SKIP
    >>> db.counts()["total"]                                      # doctest: +SKIP
    0
    """

    def __init__(self, conn: sqlite3.Connection, lock_fd: int, results: IO[bytes] | None) -> None:
        self.conn = conn
        self._lock_fd = lock_fd
        self._results = results
        self.requeued = 0

    @classmethod
    def open(cls, path: Path, *, results: Path | None = None) -> ProxyDb:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = lock(path.with_name(path.name + ".lock"), path)
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # the 200 promises the message is on disk
            conn.execute("PRAGMA cache_size = -32000")
            conn.executescript(SCHEMA)
            out = open(results, "ab") if results is not None else None  # noqa: SIM115
        except sqlite3.Error as exc:
            unlock(fd)
            raise JournalError(f"{path}: cannot open the proxy journal: {exc}") from None
        except BaseException:
            unlock(fd)
            raise
        db = cls(conn, fd, out)
        with db._tx():
            # A process that died while sending: those rows were possibly sent.
            db.requeued = conn.execute(
                "UPDATE recipients SET state = 'pending', possible_duplicate = 1 "
                "WHERE state = 'in_flight'"
            ).rowcount
        return db

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        if self._results is not None:
            self._results.close()
        unlock(self._lock_fd)

    @contextlib.contextmanager
    def _tx(self) -> Any:
        """One transaction, on disk when it returns (``synchronous = FULL``, set at open):
        an accept before its 200, and the engine's steps (in flight, outcomes) too, as the
        campaign journal does; group commits keep the fsyncs few."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- accept ------------------------------------------------------------------------------

    def accept(self, messages: Iterable[NewMessage], now: float) -> int:
        """Commit every message and its recipients in one durable transaction."""
        count = 0
        with self._tx():
            for m in messages:
                cur = self.conn.execute(
                    "INSERT INTO messages (mid, client, api, accepted_at, size, spec, raw) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (m.mid, m.client, m.api, now, len(m.recipients), orjson.dumps(m.spec), m.raw),
                )
                message = cur.lastrowid
                self.conn.executemany(
                    "INSERT INTO recipients (message, client, lane, email) VALUES (?, ?, ?, ?)",
                    [(message, m.client, m.lane, email) for email in m.recipients],
                )
                count += len(m.recipients)
        return count

    # -- intake ------------------------------------------------------------------------------

    def take(self, client: str, lane: int, after: int, limit: int) -> list[QueuedRow]:
        rows = self.conn.execute(
            "SELECT id, message, client, lane, email, possible_duplicate, attempts "
            "FROM recipients WHERE client = ? AND lane = ? AND state = 'pending' AND id > ? "
            "ORDER BY id LIMIT ?",
            (client, lane, after, limit),
        ).fetchall()
        return [QueuedRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows]

    def specs(self, ids: Iterable[int]) -> dict[int, tuple[dict[str, Any], bytes | None]]:
        out: dict[int, tuple[dict[str, Any], bytes | None]] = {}
        for message in set(ids):
            row = self.conn.execute(
                "SELECT spec, raw FROM messages WHERE id = ?", (message,)
            ).fetchone()
            if row is not None:
                out[message] = (orjson.loads(row[0]), row[1])
        return out

    # -- books -------------------------------------------------------------------------------

    def mark_in_flight(self, ids: Sequence[int], now: float) -> None:
        with self._tx():
            changed = 0
            for i in range(0, len(ids), 500):
                chunk = list(ids[i : i + 500])
                marks = ",".join("?" * len(chunk))
                changed += self.conn.execute(
                    "UPDATE recipients SET state = 'in_flight', "
                    "first_attempt_at = coalesce(first_attempt_at, ?) "
                    f"WHERE state = 'pending' AND id IN ({marks})",
                    [now, *chunk],
                ).rowcount
            if changed != len(set(ids)):
                raise JournalError("some recipients to mark in flight were not pending")

    def record(self, outcomes: Sequence[RowOutcome], now: float) -> list[int]:
        """Apply outcomes; the ids that became final (results lines written for them)."""
        finals = [o for o in outcomes if o.state in FINAL_STATES]
        with self._tx():
            for o in outcomes:
                if o.state not in FINAL_STATES:
                    self.conn.execute(
                        "UPDATE recipients SET state = 'pending', attempts = max(attempts, ?) "
                        "WHERE id = ? AND state NOT IN ('sent','failed','skipped','uncertain')",
                        (o.attempts, o.id),
                    )
            changed: list[int] = []
            for o in finals:
                cur = self.conn.execute(
                    "UPDATE recipients SET state = ?, upstream_id = ?, error_code = ?, error = ?, "
                    "attempts = max(attempts, ?), finished_at = ?, "
                    "possible_duplicate = coalesce(?, possible_duplicate) "
                    "WHERE id = ? AND state NOT IN ('sent','failed','skipped','uncertain')",
                    (
                        o.state,
                        o.message_id,
                        o.error_code,
                        o.error,
                        o.attempts,
                        now,
                        None if o.possible_duplicate is None else int(o.possible_duplicate),
                        o.id,
                    ),
                )
                if cur.rowcount:
                    changed.append(o.id)
        if changed and self._results is not None:
            self._write_results(changed)
        return changed

    def _write_results(self, ids: list[int]) -> None:
        assert self._results is not None
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(
                "SELECT r.id, r.email, r.state, r.upstream_id, r.error_code, r.error, "
                "r.attempts, r.possible_duplicate, r.first_attempt_at, r.finished_at, m.mid "
                f"FROM recipients r JOIN messages m ON m.id = r.message WHERE r.id IN ({marks})",
                chunk,
            ):
                record = {
                    "line": r[0],
                    "email": r[1],
                    "status": r[2],
                    "message_id": r[3],
                    "error_code": r[4],
                    "error": r[5],
                    "attempts": r[6],
                    "possible_duplicate": bool(r[7]),
                    "first_attempt_at": None if r[8] is None else timestamp(r[8]),
                    "finished_at": None if r[9] is None else timestamp(r[9]),
                    "proxy_message_id": r[10],
                }
                self._results.write(orjson.dumps(record) + b"\n")
        self._results.flush()

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(
            ("pending", "in_flight", "sent", "failed", "skipped", "uncertain"), 0
        )
        for state, n in self.conn.execute("SELECT state, count(*) FROM recipients GROUP BY 1"):
            counts[state] = n
        counts["possible_duplicate"] = self.conn.execute(
            "SELECT count(*) FROM recipients WHERE possible_duplicate = 1"
        ).fetchone()[0]
        counts["total"] = sum(counts[s] for s in ("pending", "in_flight", *sorted(FINAL_STATES)))
        return counts

    def problem_skips(self) -> int:
        return int(
            self.conn.execute("SELECT count(*) FROM recipients WHERE state = 'skipped'").fetchone()[
                0
            ]
        )

    def backlog(self) -> int:
        return int(
            self.conn.execute(
                "SELECT count(*) FROM recipients WHERE state IN ('pending', 'in_flight')"
            ).fetchone()[0]
        )

    def sent_since(self, since: float) -> int:
        return int(
            self.conn.execute(
                "SELECT count(*) FROM recipients WHERE state = 'sent' AND finished_at > ?",
                (since,),
            ).fetchone()[0]
        )

    def status(self, mid: str, client: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT id, accepted_at FROM messages WHERE mid = ? AND client = ?", (mid, client)
        ).fetchone()
        if row is None:
            return None
        recipients = [
            {
                "Email": r[0],
                "Status": r[1],
                "UpstreamMessageId": r[2],
                "ErrorCode": r[3],
                "Error": r[4],
                "Attempts": r[5],
                "PossibleDuplicate": bool(r[6]),
            }
            for r in self.conn.execute(
                "SELECT email, state, upstream_id, error_code, error, attempts, "
                "possible_duplicate FROM recipients WHERE message = ? ORDER BY id",
                (row[0],),
            )
        ]
        return {"MessageId": mid, "AcceptedAt": timestamp(row[1]), "Recipients": recipients}


__all__ = ["NewMessage", "ProxyDb", "QueuedRow"]
