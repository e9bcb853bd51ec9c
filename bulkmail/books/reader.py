"""A read-only view of a journal, for readers beside a run: the guard rails and reports.

It takes no lock and changes nothing (SQLite ``mode=ro``), so it may be opened while a
campaign run holds the journal; WAL gives each query a consistent snapshot.

>>> with JournalReader.open(Path("spring.journal.sqlite")) as books:   # doctest: +SKIP
...     books.counts()["sent"], books.recent_sent(1000)[:1]
(9000, ['0100018f...'])
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bulkmail.books import _journal_store as store
from bulkmail.errors import JournalError


@dataclass(frozen=True, slots=True)
class BookRow:
    """One recipient row as the report reads it (timestamps as the journal stores them).

    >>> BookRow(1, "a@x.org", "sent", "m-1", None, 1, None, None).state
    'sent'
    """

    line: int
    email: str
    state: str
    message_id: str | None
    error_code: str | None
    attempts: int
    first_attempt_at: str | None
    finished_at: str | None


class JournalReader:
    """Read-only queries on one journal file.

    >>> with JournalReader.open(Path("c.journal.sqlite")) as books:   # doctest: +SKIP
    ...     books.skip_codes()
    {'duplicate': 2, 'suppressed': 5}
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> JournalReader:
        """Open ``path`` read-only; :class:`JournalError` if it is missing or not a journal."""
        path = Path(path)
        if not path.is_file():
            raise JournalError(f"{path}: no journal here (has the campaign run yet?)")
        try:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as exc:
            raise JournalError(f"{path}: not a readable bulkmail journal: {exc}") from exc
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def counts(self) -> dict[str, int]:
        """As :meth:`bulkmail.books.journal.Journal.counts`."""
        return store.count_states(self._conn)

    def recent_sent(self, n: int) -> list[str]:
        """Message ids of the last ``n`` sent rows (by list line, newest first)."""
        cursor = self._conn.execute(
            "SELECT message_id FROM rows WHERE state = 'sent' AND message_id IS NOT NULL "
            "ORDER BY id DESC LIMIT ?",
            (n,),
        )
        return [message_id for (message_id,) in cursor]

    def rows(self) -> Iterator[BookRow]:
        """Every recipient row in line order (rows skipped at import: :meth:`skip_codes`)."""
        cursor = self._conn.execute(
            "SELECT id, email, state, message_id, error_code, attempts, first_attempt_at, "
            "finished_at FROM rows ORDER BY id"
        )
        while batch := cursor.fetchmany(2000):
            for row in batch:
                yield BookRow(*row)

    def skip_codes(self) -> dict[str, int]:
        """List rows skipped at import, by code (duplicate, suppressed, invalid...)."""
        return dict(self._conn.execute("SELECT code, count(*) FROM skips GROUP BY code"))


__all__ = ["BookRow", "JournalReader"]
