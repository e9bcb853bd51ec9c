"""The local books: a :class:`~bulkmail.books.journal.Journal` (one SQLite file) behind the
async :class:`~bulkmail.books.base.Books` interface.

The journal is synchronous; every call runs in one dedicated thread, in submission order, so
a commit never stalls the requests in flight. The list intake
(:class:`~bulkmail.intake.listfile.ListIntake`) imports its chunks in the same thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from bulkmail.books._results_file import ResultsStream
from bulkmail.books.base import Recovery, RowOutcome
from bulkmail.books.journal import Journal, RetryFailed

T = TypeVar("T")


class SqliteBooks:
    """A campaign's journal, opened (locked, recovered) and used from the event loop.

    >>> async def main() -> None:                                        # doctest: +SKIP
    ...     books = await SqliteBooks.open(Path("c.journal.sqlite"),
    ...                                    campaign_hash="c1", list_hash="l1")
    ...     try:
    ...         print(books.recovery, await books.counts())
    ...     finally:
    ...         await books.close()
    """

    def __init__(self, journal: Journal, recovery: Recovery, executor: ThreadPoolExecutor) -> None:
        self.journal = journal
        self.recovery = recovery
        self._executor = executor
        self._stream: ResultsStream | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        campaign_hash: str,
        list_hash: str,
        on_change: Literal["refuse", "restart", "force"] = "refuse",
        at_most_once: bool = False,
        retry_failed: RetryFailed = "none",
    ) -> SqliteBooks:
        """Open (or create) the journal at ``path``; see :meth:`Journal.open`."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="bulkmail-journal")
        try:
            job = asyncio.get_running_loop().run_in_executor(
                executor,
                functools.partial(
                    Journal.open,
                    path,
                    campaign_hash=campaign_hash,
                    list_hash=list_hash,
                    on_change=on_change,
                    at_most_once=at_most_once,
                    retry_failed=retry_failed,
                ),
            )
            journal, recovery = await asyncio.shield(job)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(journal, recovery, executor)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in the journal thread. Once submitted the work is never cancelled:
        cancelling a queued job would silently drop a batch of outcomes."""
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        return await asyncio.shield(job)

    async def mark_in_flight(self, ids: Sequence[int]) -> None:
        await self.run(self.journal.mark_in_flight, ids)

    async def record(self, outcomes: Sequence[RowOutcome]) -> None:
        await self.run(self._record, outcomes)

    def _record(self, outcomes: Sequence[RowOutcome]) -> None:  # in the journal thread
        self.journal.record(outcomes)
        if self._stream is not None:
            self._stream.advance()

    async def stream_results(self, path: Path) -> None:
        """Write the results file to ``path`` as rows become final, after each
        :meth:`record`; :meth:`export_results` to ``path`` without events then writes only
        the rest (see :class:`~bulkmail.books._results_file.ResultsStream`)."""
        self._stream = await self.run(self.journal.stream_results, path)

    async def counts(self) -> dict[str, int]:
        return await self.run(self.journal.counts)

    async def problem_skips(self) -> int:
        return await self.run(self.journal.problem_skip_count)

    async def export_results(self, path: Path, *, events: Path | None = None) -> int:
        """Write the results file (one JSON line per list row, atomically); with ``events``
        (the event store) each line says what SES reported (``event``)."""
        stream, self._stream = self._stream, None
        return await self.run(self.journal.export_results, path, events=events, stream=stream)

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        try:
            if stream is not None:
                await self.run(stream.discard)
            await self.run(self.journal.close)
        finally:
            self._executor.shutdown(wait=False)


__all__ = ["SqliteBooks"]
