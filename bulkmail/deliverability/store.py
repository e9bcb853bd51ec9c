"""The event store: one SQLite file (WAL) of per-recipient SES events, keyed to SES MessageIds.

Written by ``bulkmail events`` (one writer), read by campaign runs (results ``event``
field), the guard rails and ``bulkmail report``, each through its own connection. An SNS
redelivery of the same notification changes nothing: ``(sns_id, email, kind)`` is unique.

>>> with EventStore.open(Path("events.sqlite")) as store:       # doctest: +SKIP
...     store.add("sns-1", events, received_at=time.time())
...     store.kinds(["0100018f-..."])
{'0100018f-...': {'bounce'}}
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from bulkmail.deliverability.ses_events import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    sns_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    message_id TEXT NOT NULL,
    email TEXT NOT NULL,
    subtype TEXT,
    detail TEXT,
    at TEXT,
    received_at REAL NOT NULL,
    UNIQUE (sns_id, email, kind)
);
CREATE INDEX IF NOT EXISTS events_message_id ON events(message_id);
"""
#: What counts against the SES bounce rate: hard bounces (SES's own metric).
HARD_BOUNCE = "kind = 'bounce' AND subtype = 'Permanent'"
_IN = 500


class EventStore:
    """The event store file. Synchronous; one connection, used from one thread at a time.

    >>> with EventStore.open(Path("events.sqlite"), readonly=True) as store:  # doctest: +SKIP
    ...     store.counts()
    {'bounce': 3, 'bounce:Permanent': 2, 'bounce:Transient': 1, 'complaint': 1}
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> EventStore:
        """Open (creating it unless ``readonly``) the store at ``path``."""
        path = Path(path)
        if readonly:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
        conn.execute("PRAGMA busy_timeout = 5000")
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def add(self, sns_id: str, events: Sequence[Event], *, received_at: float) -> int:
        """Record the events of one SNS message (one transaction); returns how many were new."""
        return self.add_many([(sns_id, events)], received_at=received_at)

    def add_many(
        self, messages: Sequence[tuple[str, Sequence[Event]]], *, received_at: float
    ) -> int:
        """Record the events of several SNS messages in one transaction (a group commit)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO events (sns_id, kind, message_id, email, subtype, "
                "detail, at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (sns_id, e.kind, e.message_id, e.email, e.subtype, e.detail, e.at, received_at)
                    for sns_id, events in messages
                    for e in events
                ],
            )
            added = self._conn.total_changes - before
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return added

    def counts(self) -> dict[str, int]:
        """Events by kind; bounces split into ``bounce:Permanent`` and the others."""
        out: Counter[str] = Counter()
        for kind, subtype, n in self._conn.execute(
            "SELECT kind, subtype, count(*) FROM events GROUP BY kind, subtype"
        ):
            out[kind] += n
            if kind == "bounce":
                out[f"bounce:{subtype or 'Undetermined'}"] += n
        return dict(out)

    def kinds(self, message_ids: Iterable[str]) -> dict[str, set[str]]:
        """For each message id that has events: ``hard_bounce`` / ``bounce`` / ``complaint``
        / ``delivery`` / ``reject`` / ``delay`` (a hard bounce also counts as ``bounce``)."""
        ids = list(dict.fromkeys(message_ids))
        found: dict[str, set[str]] = {}
        for start in range(0, len(ids), _IN):
            part = ids[start : start + _IN]
            sql = (
                f"SELECT message_id, kind, {HARD_BOUNCE} FROM events "
                f"WHERE message_id IN ({','.join('?' * len(part))})"
            )
            for message_id, kind, hard in self._conn.execute(sql, part):
                kinds = found.setdefault(message_id, set())
                kinds.add(kind)
                if hard:
                    kinds.add("hard_bounce")
        return found

    def rows(self) -> list[tuple[str, str, str, str | None]]:
        """Every event as ``(kind, message_id, email, subtype)``, oldest first."""
        return list(
            self._conn.execute("SELECT kind, message_id, email, subtype FROM events ORDER BY id")
        )


__all__ = ["HARD_BOUNCE", "EventStore"]
