"""An intake of rows held in memory: the :class:`~bulkmail.intake.base.Intake` seam for tests
and for callers that already have their rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from bulkmail.books.base import PendingRow
from bulkmail.intake.base import Batch


class MemoryIntake:
    """Hand out ``rows`` in batches of ``chunk``; remember which batches were settled.

    >>> intake = MemoryIntake([PendingRow(i, i, f"r{i}@example.com", {}, False, 0)
    ...                        for i in range(1, 4)], chunk=2)
    >>> len(intake.pending)
    3
    """

    def __init__(self, rows: Iterable[PendingRow], *, chunk: int = 500) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.pending = list(rows)
        self.chunk = chunk
        self.settled: list[Batch] = []
        self.handed_out: list[Batch] = []

    async def batches(self) -> AsyncIterator[Batch]:
        for start in range(0, len(self.pending), self.chunk):
            batch = Batch(self.pending[start : start + self.chunk], token=start)
            self.handed_out.append(batch)
            yield batch

    async def settle(self, batch: Batch) -> None:
        self.settled.append(batch)


__all__ = ["MemoryIntake"]
