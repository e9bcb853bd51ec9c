"""The campaign pipeline: recipients → journal → render → sender → journal.

One event loop does the sending; one worker thread owns the SQLite journal and the list
reader, so a commit or a chunk of CSV parsing never stalls the requests in flight::

    list file ──(journal thread: parse, dedupe, insert)──► pending rows
        ──(loop: render)──► queue ──(journal thread: mark in flight, group commit)──►
        gate + limiter ──► provider.send ──► outcome buffer ──(group commit)──► journal

A recipient is durably *in flight* before its request leaves and its outcome is committed
within ``flush_interval`` of the answer. A crash therefore leaves at worst a few rows in
flight; the next run treats exactly those as ambiguous (``possible_duplicate`` or, with
``at_most_once``, ``uncertain``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from bulkmail.books.journal import Journal, PendingRow, Recovery, RowOutcome
from bulkmail.delivery.sender import Delivery, RetryPolicy, Sender, Status
from bulkmail.errors import CampaignStopped, FatalProviderError, QuotaExhausted
from bulkmail.input.campaign import Campaign
from bulkmail.input.compose import Composer
from bulkmail.input.recipients import (
    Recipient,
    Rejected,
    list_fingerprint,
    read_recipients,
    read_suppressed,
)
from bulkmail.input.render import RenderProblem
from bulkmail.mail.message import Message

T = TypeVar("T")


@dataclass(slots=True)
class Progress:
    """Live counters for this run, read by the CLI's progress display."""

    started_at: float = field(default_factory=time.monotonic)
    first_send_at: float | None = None
    last_send_at: float | None = None
    imported: int = 0
    import_done: bool = False
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    uncertain: int = 0
    requeued: int = 0
    #: Rows found pending in the journal and resumed by this run.
    resumed: int = 0
    already_done: int = 0

    @property
    def rate(self) -> float:
        if self.first_send_at is None or self.last_send_at is None or self.sent < 2:
            return 0.0
        span = self.last_send_at - self.first_send_at
        return (self.sent - 1) / span if span > 0 else 0.0


@dataclass(slots=True, frozen=True)
class Summary:
    """What a campaign run did, and where the books stand now.

    ``counts`` are the journal's totals over every run of this campaign; ``sent_this_run``
    and ``rate`` describe this run only.
    """

    name: str
    counts: dict[str, int]
    sent_this_run: int
    duration: float
    rate: float
    recovery: Recovery
    results: str
    journal: str
    stopped: str | None = None
    stop_kind: Literal["fatal", "quota", "interrupted"] | None = None
    problem_skips: int = 0
    #: Seconds from the start of the run to the first accepted send (None: nothing sent).
    first_send_s: float | None = None

    @property
    def complete(self) -> bool:
        c = self.counts
        return not (c.get("pending", 0) or c.get("in_flight", 0) or c.get("uncertain", 0))

    @property
    def exit_code(self) -> int:
        """0 when every recipient was sent (or deliberately skipped), else 1."""
        if not self.complete or self.counts.get("failed", 0) or self.problem_skips:
            return 1
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.name,
            "counts": self.counts,
            "sent_this_run": self.sent_this_run,
            "duration_s": round(self.duration, 3),
            "rate_per_s": round(self.rate, 2),
            "possible_duplicates": self.counts.get("possible_duplicate", 0),
            "uncertain": self.counts.get("uncertain", 0),
            "recovered_in_flight": self.recovery.ambiguous,
            "complete": self.complete,
            "stopped": self.stopped,
            "stop_kind": self.stop_kind,
            "results": self.results,
            "journal": self.journal,
            "exit_code": self.exit_code,
            "first_send_s": None if self.first_send_s is None else round(self.first_send_s, 3),
        }


class CampaignRun:
    """One run of a campaign against a provider (injected), resuming from its journal.

    >>> async def main(campaign: Campaign, provider: Provider) -> None:  # doctest: +SKIP
    ...     summary = await CampaignRun(campaign, provider).run()
    ...     print(summary.counts)

    ``stop`` is an event the caller sets to drain (Ctrl-C): no new recipient starts,
    answers in flight are awaited up to ``grace`` seconds, then the journal is saved.
    """

    def __init__(
        self,
        campaign: Campaign,
        provider: Any,
        *,
        rate: float | None = None,
        on_change: Literal["refuse", "restart", "force"] = "refuse",
        at_most_once: bool = False,
        stop: asyncio.Event | None = None,
        grace: float = 10.0,
        chunk: int = 500,
        flush_interval: float = 0.05,
        sender: Sender | None = None,
        daily_limit: int | None = None,
    ) -> None:
        self.campaign = campaign
        self.provider = provider
        effective_rate = rate if rate is not None else campaign.rate
        if effective_rate is None:
            raise ValueError("rate is 'auto': resolve it from the provider's quota first")
        self.sender = sender or Sender(
            provider,
            rate=effective_rate,
            retry=RetryPolicy(max_attempts=campaign.max_attempts),
            at_most_once=at_most_once,
            max_concurrency=campaign.concurrency or 512,
        )
        self.on_change = on_change
        self.at_most_once = at_most_once
        self.stop_event = stop or asyncio.Event()
        self.grace = grace
        self.chunk = chunk
        self.flush_interval = flush_interval
        self.daily_limit = daily_limit if daily_limit is not None else campaign.daily_limit
        self.progress = Progress()
        self.composer = Composer.for_campaign(campaign)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="bulkmail-journal")
        self._journal: Journal | None = None
        self._outcomes: list[RowOutcome] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Raw messages are built when composed: bound what waits in the queue by bytes too
        # (64 MiB), so a campaign with a 10 MB attachment cannot hold gigabytes ahead.
        size = self.composer.raw_size_hint
        depth = 4 * chunk if size is None else max(16, min(4 * chunk, (64 << 20) // size))
        self._queue: asyncio.Queue[tuple[PendingRow, Message] | None] = asyncio.Queue(maxsize=depth)
        self._dispatched = 0
        self._interrupted = False
        self._limit_stop: QuotaExhausted | None = None

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in the journal thread. Once submitted, the work is never cancelled:
        cancelling a queued executor job would silently drop a batch of outcomes (seen as
        rows left in flight after a clean run). Jobs run in submission order."""
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        return await asyncio.shield(job)

    @property
    def _j(self) -> Journal:
        assert self._journal is not None
        return self._journal

    async def run(self) -> Summary:
        campaign = self.campaign
        # Whole-file problems (missing file, no email column) surface here, before the
        # journal exists and before anything is sent.
        await self._db(self._preflight)
        list_hash = await self._db(self._list_hash)
        self._journal, recovery = await self._db(
            Journal.open,
            campaign.journal,
            campaign_hash=campaign.content_hash(),
            list_hash=list_hash,
            on_change=self.on_change,
            at_most_once=self.at_most_once,
        )
        try:
            counts = await self._db(self._j.counts)
            self.progress.already_done = counts.get("sent", 0)
            self.progress.requeued = recovery.requeued
            stop_watch = asyncio.create_task(self._watch_stop())
            flusher = asyncio.create_task(self._flush_loop())
            producer = asyncio.create_task(self._produce())
            try:
                await self._dispatch()
            finally:
                if not producer.done():
                    producer.cancel()
                # Drain and flush before any error of the reader or the flusher surfaces:
                # sends already under way must be recorded, and must not outlive the journal.
                await asyncio.wait([producer])
                await self._drain_tasks()
                stop_watch.cancel()
                flusher.cancel()
                await asyncio.wait([flusher])
                await self._flush()
                for task in (producer, flusher):
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            return await self._finish(recovery)
        finally:
            journal, self._journal = self._journal, None
            if journal is not None:
                await self._db(journal.close)
            self._executor.shutdown(wait=False)

    def _preflight(self) -> None:
        next(iter(read_recipients(self.campaign.recipients)), None)

    def _list_hash(self) -> str:
        # The suppression file is not part of it: it may grow between runs (it is read
        # again on every run) without --force.
        return list_fingerprint(self.campaign.recipients)

    # -- producer: resume pending rows, then stream the rest of the list --------------------

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
        if self.campaign.suppress is not None:
            # Read on every run, before anything pending is resumed: someone who
            # unsubscribed between two runs is never mailed by the second.
            await self._db(self._load_suppressed)
        after = 0
        while not self._stopping:
            rows = await self._db(self._j.pending, after_id=after, limit=self.chunk)
            if not rows:
                break
            after = rows[-1].id
            self.progress.resumed += len(rows)
            await self._enqueue(rows)
        if not self._j.finished_import:
            reader = read_recipients(
                self.campaign.recipients, start_after_line=self._j.imported_through
            )
            while not self._stopping:
                rows, last = await self._db(self._import_chunk, reader)
                self.progress.imported += len(rows)
                await self._enqueue(rows)
                if last:
                    break
        self.progress.import_done = True

    def _load_suppressed(self) -> int:
        assert self.campaign.suppress is not None
        return self._j.load_suppressed(read_suppressed(self.campaign.suppress))

    def _import_chunk(
        self, reader: Iterator[Recipient | Rejected]
    ) -> tuple[list[PendingRow], bool]:
        """Runs in the journal thread: parse up to one chunk of the list and insert it."""
        recipients: list[Recipient] = []
        rejected: list[Rejected] = []
        through = self._j.imported_through
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
        rows = self._j.add_rows(recipients, rejected, through_line=through, last=last)
        return rows, last

    async def _enqueue(self, rows: list[PendingRow]) -> None:
        for row in rows:
            recipient = Recipient(line=row.line, email=row.email, key="", fields=row.fields)
            rendered = self.composer.compose(recipient, key=row.id)
            if isinstance(rendered, RenderProblem):
                self.progress.skipped += 1
                self._outcomes.append(
                    RowOutcome(row.id, "skipped", error_code=rendered.code, error=rendered.reason)
                )
                continue
            await self._queue.put((row, rendered))

    # -- dispatcher: mark a batch in flight (one commit), then hand each to the sender -------

    @property
    def _stopping(self) -> bool:
        return (
            self.stop_event.is_set()
            or self.sender.stopped is not None
            or self._limit_stop is not None
        )

    async def _dispatch(self) -> None:
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
            await self._db(self._j.mark_in_flight, [row.id for row, _ in batch])
            for index, (row, message) in enumerate(batch):
                if self.stop_event.is_set() or self.sender.stopped is not None:
                    self._give_back(batch[index:])
                    break
                await self.sender.acquire_slot()
                task = asyncio.create_task(self._deliver(row, message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _next_item(self) -> tuple[PendingRow, Message] | None:
        getter = asyncio.ensure_future(self._queue.get())
        stopper = asyncio.ensure_future(self.stop_event.wait())
        try:
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        return None

    def _apply_daily_limit(
        self, batch: list[tuple[PendingRow, Message]]
    ) -> list[tuple[PendingRow, Message]]:
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
            batch = batch[:room]
        self._dispatched += len(batch)
        return batch

    def _give_back(self, items: list[tuple[PendingRow, Message]]) -> None:
        for row, _ in items:
            self._outcomes.append(RowOutcome(row.id, "pending"))

    async def _deliver(self, row: PendingRow, message: Message) -> None:
        try:
            delivery: Delivery = await self.sender.send_in_slot(message)
        except Exception as exc:  # a bug below us: stop rather than fail everyone alike
            # The row stays in flight: the next run treats it as possibly sent.
            self.sender.stop(
                FatalProviderError(f"internal error while sending: {type(exc).__name__}: {exc}")
            )
            return
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
        self._outcomes.append(
            RowOutcome(
                row.id,
                delivery.status.value,
                message_id=delivery.message_id,
                error_code=delivery.error_code,
                error=delivery.error,
                attempts=row.attempts + delivery.attempts,
                possible_duplicate=True if delivery.possible_duplicate else None,
            )
        )
        if len(self._outcomes) >= self.chunk:
            await self._flush()

    # -- journal group commits, shutdown ---------------------------------------------------

    async def _flush(self) -> None:
        if self._outcomes:
            batch, self._outcomes = self._outcomes, []
            await self._db(self._j.record, batch)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self._flush()

    async def _watch_stop(self) -> None:
        await self.stop_event.wait()
        self._interrupted = True
        self.sender.drain()

    async def _drain_tasks(self) -> None:
        if self.sender.stopped is not None:
            self.sender.drain()
        # Wake the dispatcher's consumers: leftover queued rows simply stay pending.
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=self.grace)
            for task in late:
                task.cancel()  # its row stays in flight: ambiguous on the next run
            if late:
                await asyncio.wait(late)

    async def _finish(self, recovery: Recovery) -> Summary:
        await self._db(self._j.export_results, self.campaign.results, events=self.campaign.events)
        counts = await self._db(self._j.counts)
        stopped = self.sender.stopped or self._limit_stop
        kind: Literal["fatal", "quota", "interrupted"] | None = None
        if isinstance(stopped, QuotaExhausted):
            kind = "quota"
        elif isinstance(stopped, CampaignStopped):
            kind = "fatal"
        elif self._interrupted:
            kind = "interrupted"
        problem_skips = await self._db(self._j.problem_skip_count)
        return Summary(
            name=self.campaign.name,
            counts=counts,
            sent_this_run=self.progress.sent,
            duration=time.monotonic() - self.progress.started_at,
            rate=self.progress.rate,
            recovery=recovery,
            results=str(self.campaign.results),
            journal=str(self.campaign.journal),
            stopped=str(stopped) if stopped else ("interrupted" if self._interrupted else None),
            stop_kind=kind,
            problem_skips=problem_skips,
            first_send_s=(
                None
                if self.progress.first_send_at is None
                else self.progress.first_send_at - self.progress.started_at
            ),
        )
