"""The engine's outcome side: outcomes waiting to be recorded, batches waiting to be settled.

Each row's outcome lands here (:meth:`Ledger.settle_row`); the ledger records the waiting
ones in one books step (every ``flush_interval``, or as soon as a batch is complete) and
then settles each complete batch with its intake. A batch with a row given back (a
``pending`` outcome) is never settled: whoever reads the intake next hands it out again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from bulkmail.books.base import Books, RowOutcome
from bulkmail.errors import JournalError
from bulkmail.intake.base import Batch, Intake


@dataclass(slots=True, eq=False)
class OpenBatch:
    """A batch handed out by the intake whose rows do not all have an outcome yet."""

    batch: Batch
    remaining: int
    complete: bool = True  # False once a row is given back: never settle it


class Ledger:
    """Outcomes on their way to the books, in groups.

    >>> async def main(books: Books, intake: Intake, batch: Batch) -> None:  # doctest: +SKIP
    ...     ledger = Ledger(books, intake, flush_interval=0.05, on_failed=print)
    ...     open_ = OpenBatch(batch, len(batch.rows))
    ...     for row in batch.rows:
    ...         ledger.settle_row(open_, RowOutcome(row.id, "sent", attempts=1))
    ...     await ledger.flush()          # one books step, then the intake settles the batch

    ``on_failed`` is called once with the :class:`~bulkmail.errors.JournalError` when the
    books cannot be written (the run then stops sending); the outcomes are kept for the
    next flush.
    """

    def __init__(
        self,
        books: Books,
        intake: Intake,
        *,
        flush_interval: float,
        on_failed: Callable[[JournalError], None],
    ) -> None:
        self.books = books
        self.intake = intake
        self.flush_interval = flush_interval
        self.on_failed = on_failed
        self.error: JournalError | None = None
        self._outcomes: list[RowOutcome] = []
        self._ready: list[Batch] = []  # every row final; settle after the next record
        # Set when a batch becomes ready: the flush loop records and settles it at once
        # rather than at its next tick, so a long flush_interval never delays the end.
        self._batch_ready = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Outcomes not yet recorded."""
        return len(self._outcomes)

    def settle_row(self, open_: OpenBatch, outcome: RowOutcome) -> None:
        self._outcomes.append(outcome)
        if outcome.state == "pending":
            open_.complete = False
        open_.remaining -= 1
        if open_.remaining == 0 and open_.complete:
            self.batch_done(open_.batch)

    def batch_done(self, batch: Batch) -> None:
        """``batch`` needs no more outcomes: settle it after the next record."""
        self._ready.append(batch)
        self._batch_ready.set()

    async def flush(self) -> None:
        if not (self._outcomes or self._ready):
            return
        outcomes, self._outcomes = self._outcomes, []
        ready, self._ready = self._ready, []
        try:
            if outcomes:
                await self.books.record(outcomes)
        except BaseException:
            # Not lost: kept for the next flush (the final one runs after the drain).
            self._outcomes[:0] = outcomes
            self._ready[:0] = ready
            raise
        for batch in ready:
            await self.intake.settle(batch)

    async def flush_or_stop(self) -> None:
        try:
            await self.flush()
        except JournalError as exc:
            self.failed(exc)

    def failed(self, exc: JournalError) -> None:
        if self.error is None:
            self.error = exc
        self.on_failed(exc)

    async def loop(self) -> None:
        # A timer sets the same event, rather than asyncio.wait_for(event.wait(), interval):
        # on Python 3.11 wait_for drops a cancellation that arrives as the event is set
        # (CPython gh-86296), and this loop would outlive the run.
        loop = asyncio.get_running_loop()
        while self.error is None:
            tick = loop.call_later(self.flush_interval, self._batch_ready.set)
            try:
                await self._batch_ready.wait()
            finally:
                tick.cancel()
            self._batch_ready.clear()
            await self.flush_or_stop()


__all__ = ["Ledger", "OpenBatch"]
