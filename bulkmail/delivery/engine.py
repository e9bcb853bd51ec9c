"""The pipeline: intake → compose → pacer → provider → books.

The engine knows its collaborators only through their seams — an
:class:`~bulkmail.intake.base.Intake` hands out pending rows, a compose function turns a row
into a :class:`~bulkmail.mail.message.Message`, a :class:`~bulkmail.delivery.sender.Sender`
paces (through a :class:`~bulkmail.pacing.base.Pacer`) and retries against a provider, and
:class:`~bulkmail.books.base.Books` keep every outcome::

    intake ──batches──► compose ──► queue ──(books: mark in flight, one step per batch)──►
        gate + pacer ──► provider.send ──► outcome buffer ──(books: group record)──► settle

A recipient is durably *in flight* before its request leaves and its outcome is recorded
within ``flush_interval`` of the answer; a batch is settled with its intake once every row
in it has a final outcome recorded. A crash therefore leaves at worst a few rows in flight,
which whoever recovers the books treats as ambiguous (``possible_duplicate`` or, under
at-most-once, ``uncertain``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from bulkmail.books.base import NO_RECOVERY, Books, PendingRow, Recovery, RowOutcome
from bulkmail.delivery._ledger import Ledger, OpenBatch
from bulkmail.delivery.guards import Guard
from bulkmail.delivery.progress import Progress, StopKind, Summary
from bulkmail.delivery.sender import Delivery, Sender, Status
from bulkmail.errors import (
    CampaignStopped,
    InternalError,
    JournalError,
    ProviderUnavailable,
    QuotaExhausted,
)
from bulkmail.intake.base import Batch, Intake
from bulkmail.mail.message import Message


class Unsendable(Protocol):
    """Why a row cannot become a message (a template variable it lacks, a bad header)."""

    @property
    def code(self) -> str: ...
    @property
    def reason(self) -> str: ...


#: Turns a pending row into its message, or says why it cannot be sent.
Compose = Callable[[PendingRow], "Message | Unsendable"]


_Item = tuple[PendingRow, Message, OpenBatch]


class CampaignRun:
    """One run of the pipeline over whatever the intake hands out.

    >>> async def main(intake: Intake, books: Books, compose: Compose,
    ...                sender: Sender) -> None:                          # doctest: +SKIP
    ...     summary = await CampaignRun(intake=intake, books=books, compose=compose,
    ...                                 sender=sender, name="news").run()
    ...     print(summary.counts)

    ``stop`` is an event the caller sets to drain (Ctrl-C): no new recipient starts,
    answers in flight are awaited up to ``grace`` seconds, then the books are flushed.
    ``guards`` are polled every ``guard_interval`` seconds; a reason pauses the run.
    """

    def __init__(
        self,
        *,
        intake: Intake,
        books: Books,
        compose: Compose,
        sender: Sender,
        name: str = "",
        recovery: Recovery = NO_RECOVERY,
        stop: asyncio.Event | None = None,
        grace: float = 10.0,
        chunk: int = 500,
        flush_interval: float = 0.05,
        queue_depth: int | None = None,
        daily_limit: int | None = None,
        guards: Sequence[Guard] = (),
        guard_interval: float = 2.0,
    ) -> None:
        self.intake = intake
        self.books = books
        self.compose = compose
        self.sender = sender
        self.name = name
        self.recovery = recovery
        self.stop_event = stop or asyncio.Event()
        self.grace = grace
        self.chunk = chunk
        self.flush_interval = flush_interval
        self.daily_limit = daily_limit
        self.guards = tuple(guards)
        self.guard_interval = guard_interval
        self.progress = Progress(requeued=recovery.requeued)
        self._ledger = Ledger(
            books, intake, flush_interval=flush_interval, on_failed=self._books_failed
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=queue_depth or 4 * chunk)
        self._dispatched = 0
        self._interrupted = False
        self._paused: str | None = None
        self._limit_stop: QuotaExhausted | None = None
        # Set by anything that ends dispatching (Ctrl-C, a pause, a provider stop): wakes a
        # dispatcher waiting on an empty queue while the intake waits for more work.
        self._halt = asyncio.Event()

    async def run(self) -> Summary:
        counts = await self.books.counts()
        self.progress.already_done = counts.get("sent", 0)
        helpers = [
            asyncio.create_task(self._watch_stop()),
            asyncio.create_task(self._ledger.loop()),
        ]
        if self.guards:
            helpers.append(asyncio.create_task(self._watch_guards()))
        producer = asyncio.create_task(self._produce())
        try:
            await self._dispatch()
        finally:
            if not producer.done():
                producer.cancel()
            # Drain and flush before any error of the intake or the books surfaces: sends
            # already under way must be recorded, and must not outlive the books.
            try:
                await asyncio.wait([producer])
                await self._drain_tasks()
            except asyncio.CancelledError:
                # Quit at once (a second Ctrl-C): answers already received are still
                # recorded; requests still out stay in flight (possibly sent, next run).
                await self._abandon(producer, helpers)
                raise
            for task in helpers:
                task.cancel()
            await asyncio.wait(helpers)
            await self._ledger.flush()
            for task in (producer, *helpers):
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        if self._ledger.error is not None:
            raise self._ledger.error
        return await self._finish()

    async def _abandon(
        self, producer: asyncio.Task[None], helpers: list[asyncio.Task[None]]
    ) -> None:
        for task in (producer, *helpers, *self._tasks):
            task.cancel()
        await asyncio.wait([producer, *helpers, *self._tasks])
        await self._ledger.flush()

    # -- producer: what the intake hands out, composed ----------------------------------------

    async def _produce(self) -> None:
        try:
            await self._produce_rows()
        except asyncio.CancelledError:
            raise
        except BaseException:
            await self._queue.put(None)  # end the dispatcher; run() re-raises this error
            raise
        # Always, stopping or not: the dispatcher may be waiting on an empty queue when the
        # provider stops the campaign (only a Ctrl-C also wakes it through stop_event).
        await self._queue.put(None)

    async def _produce_rows(self) -> None:
        batches = self.intake.batches()
        try:
            async for batch in batches:
                if batch.resumed:
                    self.progress.resumed += len(batch.rows)
                else:
                    self.progress.imported += len(batch.rows)
                await self._enqueue(batch)
                if self._stopping:
                    return
            self.progress.import_done = True
        finally:
            aclose = getattr(batches, "aclose", None)  # an async generator: end it now
            if aclose is not None:
                await aclose()

    async def _enqueue(self, batch: Batch) -> None:
        open_ = OpenBatch(batch, len(batch.rows))
        if not batch.rows:
            self._ledger.batch_done(batch)
        for row in batch.rows:
            composed = self.compose(row)
            if not isinstance(composed, Message):
                self.progress.skipped += 1
                self._ledger.settle_row(
                    open_,
                    RowOutcome(row.id, "skipped", error_code=composed.code, error=composed.reason),
                )
                continue
            await self._queue.put((row, composed, open_))

    # -- dispatcher: mark a batch in flight (one step), then hand each to the sender -------

    @property
    def _stopping(self) -> bool:
        return (
            self.stop_event.is_set()
            or self.sender.stopped is not None
            or self._limit_stop is not None
            or self._paused is not None
            or self._ledger.error is not None
        )

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()  # asyncio.create_task looks it up (a getpid()) each
        ended = False
        while not ended and not self._stopping:
            first = await self._next_item()
            if first is None:
                break
            batch = [first]
            limit = max(1, min(self.chunk, int(self.sender.limiter.effective_rate * 0.05)))
            while len(batch) < limit and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    ended = True
                    break
                batch.append(item)
            batch = self._apply_daily_limit(batch)
            if not batch:
                break
            try:
                await self.books.mark_in_flight([row.id for row, _, _ in batch])
            except JournalError as exc:  # not marked, so not sent: the rows stay pending
                for _, _, open_ in batch:
                    open_.complete = False
                self._ledger.failed(exc)
                break
            for index, (row, message, open_) in enumerate(batch):
                if self._stopping and self._limit_stop is None:
                    self._give_back(batch[index:])
                    break
                await self.sender.acquire_slot()
                task = loop.create_task(self._deliver(row, message, open_))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _next_item(self) -> _Item | None:
        getter = asyncio.ensure_future(self._queue.get())
        stopper = asyncio.ensure_future(self._halt.wait())
        try:
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        return None

    def _apply_daily_limit(self, batch: list[_Item]) -> list[_Item]:
        if self.daily_limit is None:
            self._dispatched += len(batch)
            return batch
        room = max(0, self.daily_limit - self._dispatched)
        if room < len(batch):
            # Stop dispatching, but let recipients already under way finish: they count.
            self._limit_stop = QuotaExhausted(
                f"daily limit of {self.daily_limit} recipients reached for this run",
                code="DailyLimit",
            )
            self._halt.set()
            batch = batch[:room]
        self._dispatched += len(batch)
        return batch

    def _give_back(self, items: list[_Item]) -> None:
        for row, _, open_ in items:
            self._ledger.settle_row(open_, RowOutcome(row.id, "pending"))

    async def _deliver(self, row: PendingRow, message: Message, open_: OpenBatch) -> None:
        try:
            delivery: Delivery = await self.sender.send_in_slot(message)
        except Exception as exc:  # a bug below us: stop rather than fail everyone alike
            # The row stays in flight: whoever recovers the books treats it as possibly sent.
            self.sender.stop(
                InternalError(f"internal error while sending: {type(exc).__name__}: {exc}")
            )
            open_.complete = False
            self._halt.set()
            return
        if self.sender.stopped is not None:
            self._halt.set()
        progress = self.progress
        if delivery.status is Status.SENT:
            now = time.monotonic()
            if progress.first_send_at is None:
                progress.first_send_at = now
            progress.last_send_at = now
            progress.sent += 1
        elif delivery.status is Status.FAILED:
            progress.failed += 1
        elif delivery.status is Status.UNCERTAIN:
            progress.uncertain += 1
        self._ledger.settle_row(
            open_,
            RowOutcome(
                row.id,
                delivery.status.value,
                message_id=delivery.message_id,
                error_code=delivery.error_code,
                error=delivery.error,
                attempts=row.attempts + delivery.attempts,
                # Given back unsent, the sender knows whether any answer left doubt; a final
                # outcome only ever adds the flag.
                possible_duplicate=(
                    delivery.possible_duplicate
                    if delivery.status is Status.UNSENT
                    else (True if delivery.possible_duplicate else None)
                ),
                retryable=delivery.retryable if delivery.status is Status.FAILED else None,
            ),
        )
        if self._ledger.waiting >= self.chunk:
            await self._ledger.flush_or_stop()

    # -- books, guards, shutdown (outcomes are grouped by the ledger, delivery/_ledger.py) -

    def _books_failed(self, exc: JournalError) -> None:
        """The books cannot be written (a full disk): nothing more may be sent, since its
        outcome could not be recorded; answers in flight are awaited and kept."""
        self.sender.drain()
        self._halt.set()

    async def _watch_stop(self) -> None:
        await self.stop_event.wait()
        self._interrupted = True
        self.sender.drain()
        self._halt.set()

    async def _watch_guards(self) -> None:
        while True:
            await asyncio.sleep(self.guard_interval)
            for guard in self.guards:
                reason = await guard.check()
                if reason is not None:
                    self._paused = reason
                    self.sender.drain()
                    self._halt.set()
                    return

    async def _drain_tasks(self) -> None:
        if self.sender.stopped is not None:
            self.sender.drain()
        if self._tasks and not self._stopping:
            # The intake ran dry: every send still retrying ends on its own (its attempts
            # are bounded), however long its backoff. Only a stop that comes meanwhile bounds
            # the wait by the grace period; cancelling a send would leave its row in flight.
            halted = asyncio.ensure_future(self._halt.wait())
            try:
                while self._tasks and not halted.done():
                    await asyncio.wait({*self._tasks, halted}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                halted.cancel()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=self.grace)
            for task in late:
                task.cancel()  # its row stays in flight: ambiguous on the next run
            if late:
                await asyncio.wait(late)

    def _stop_kind(self) -> tuple[str | None, StopKind | None]:
        stopped = self.sender.stopped or self._limit_stop
        if isinstance(stopped, QuotaExhausted):
            return str(stopped), "quota"
        if isinstance(stopped, ProviderUnavailable):
            return str(stopped), "unavailable"
        if isinstance(stopped, CampaignStopped):
            return str(stopped), "fatal"
        if self._paused is not None:
            return f"paused: {self._paused}", "paused"
        if self._interrupted:
            return "interrupted", "interrupted"
        return None, None

    async def _finish(self) -> Summary:
        counts = await self.books.counts()
        stopped, kind = self._stop_kind()
        progress = self.progress
        return Summary(
            name=self.name,
            counts=counts,
            sent_this_run=progress.sent,
            duration=time.monotonic() - progress.started_at,
            rate=progress.rate,
            recovery=self.recovery,
            stopped=stopped,
            stop_kind=kind,
            problem_skips=await self.books.problem_skips(),
            first_send_s=(
                None
                if progress.first_send_at is None
                else progress.first_send_at - progress.started_at
            ),
        )


__all__ = ["CampaignRun", "Compose", "Progress", "Summary", "Unsendable"]
