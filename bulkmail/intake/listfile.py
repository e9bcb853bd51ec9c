"""The campaign's list file as an intake: resume what the journal holds, then stream the rest.

The list is parsed and imported in the journal's thread, one chunk per transaction, while
sending goes on; duplicates, invalid addresses and suppressed keys are settled as skips by the
journal itself and never reach the engine. The suppression file is read on every run, before
anything pending is resumed: someone who unsubscribed between two runs is never mailed by the
second. Settling is a no-op: the journal row *is* the durable record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from bulkmail.books.base import PendingRow
from bulkmail.books.sqlite import SqliteBooks
from bulkmail.input.recipients import Recipient, Rejected, read_recipients, read_suppressed
from bulkmail.intake.base import Batch


class ListIntake:
    """Pending rows of a campaign's journal, then the list file's not yet imported lines.

    >>> async def main(books: SqliteBooks) -> None:                    # doctest: +SKIP
    ...     intake = ListIntake(books, Path("recipients.csv"), suppress=None)
    ...     async for batch in intake.batches():
    ...         print(len(batch.rows), batch.resumed)
    """

    def __init__(
        self, books: SqliteBooks, recipients: Path, *, suppress: Path | None, chunk: int = 500
    ) -> None:
        self.books = books
        self.recipients = recipients
        self.suppress = suppress
        self.chunk = chunk

    async def batches(self) -> AsyncIterator[Batch]:
        journal = self.books.journal
        if self.suppress is not None:
            await self.books.run(self._load_suppressed)
        after = 0
        while True:
            rows = await self.books.run(journal.pending, after_id=after, limit=self.chunk)
            if not rows:
                break
            after = rows[-1].id
            yield Batch(rows, resumed=True)
        if journal.finished_import:
            return
        reader = read_recipients(self.recipients, start_after_line=journal.imported_through)
        while True:
            rows, last = await self.books.run(self._import_chunk, reader)
            yield Batch(rows)
            if last:
                return

    async def settle(self, batch: Batch) -> None:
        return None

    def _load_suppressed(self) -> int:
        assert self.suppress is not None
        return self.books.journal.load_suppressed(read_suppressed(self.suppress))

    def _import_chunk(
        self, reader: Iterator[Recipient | Rejected]
    ) -> tuple[list[PendingRow], bool]:
        """Runs in the journal thread: parse up to one chunk of the list and insert it."""
        journal = self.books.journal
        recipients: list[Recipient] = []
        rejected: list[Rejected] = []
        through = journal.imported_through
        last = True
        for item in reader:
            through = item.line
            if isinstance(item, Recipient):
                recipients.append(item)
            else:
                rejected.append(item)
            if len(recipients) + len(rejected) >= self.chunk:
                last = False
                break
        return journal.add_rows(recipients, rejected, through_line=through, last=last), last


__all__ = ["ListIntake"]
