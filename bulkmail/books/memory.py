"""In-memory books: the :class:`~bulkmail.books.base.Books` seam without a disk, for tests
and for embedding the engine where durability lives elsewhere."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from bulkmail.books.base import BENIGN_SKIP_CODES, FINAL_STATES, PendingRow, RowOutcome
from bulkmail.errors import JournalError


class MemoryBooks:
    """Books kept in a dict, with the same state rules as the journal.

    >>> books = MemoryBooks([PendingRow(1, 1, "ana@example.com", {}, False, 0)])
    >>> books.states[1]
    'pending'

    ``history`` lists every ``(method, ids)`` call in order, so a test can check that a row
    was in flight before its outcome arrived.
    """

    def __init__(self, rows: Iterable[PendingRow] = ()) -> None:
        self.states: dict[int, str] = {}
        self.outcomes: dict[int, RowOutcome] = {}
        self.possible_duplicate: set[int] = set()
        self.history: list[tuple[str, tuple[int, ...]]] = []
        self.skip_codes: Counter[str] = Counter()
        for row in rows:
            self.add(row)

    def add(self, row: PendingRow) -> None:
        self.states[row.id] = "pending"
        if row.possible_duplicate:
            self.possible_duplicate.add(row.id)

    async def mark_in_flight(self, ids: Sequence[int]) -> None:
        if any(self.states.get(i) != "pending" for i in ids):
            raise JournalError("some rows to mark in flight are not pending")
        for i in ids:
            self.states[i] = "in_flight"
        self.history.append(("mark_in_flight", tuple(ids)))

    async def record(self, outcomes: Sequence[RowOutcome]) -> None:
        for o in outcomes:
            if self.states.get(o.id) in FINAL_STATES:
                continue
            self.states[o.id] = o.state
            self.outcomes[o.id] = o
            if o.possible_duplicate:
                self.possible_duplicate.add(o.id)
            if o.state == "skipped" and o.error_code:
                self.skip_codes[o.error_code] += 1
        self.history.append(("record", tuple(o.id for o in outcomes)))

    async def counts(self) -> dict[str, int]:
        counts = dict(Counter(self.states.values()))
        counts["possible_duplicate"] = len(self.possible_duplicate)
        counts["total"] = len(self.states)
        return counts

    async def problem_skips(self) -> int:
        return sum(n for code, n in self.skip_codes.items() if code not in BENIGN_SKIP_CODES)


__all__ = ["MemoryBooks"]
