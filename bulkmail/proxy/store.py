"""The proxy's accept queue: durable accept, fair hand-out, per-recipient books.

:class:`SqliteQueue` is at once the :class:`~bulkmail.intake.base.Intake` and the
:class:`~bulkmail.books.base.Books` the unchanged engine
(:class:`~bulkmail.delivery.engine.CampaignRun`) runs over: :meth:`SqliteQueue.accept`
commits a request's messages (group commit: requests arriving together share one fsync)
before the HTTP answer, and :meth:`SqliteQueue.batches` hands their recipients out, waiting
for more when the queue is empty (the proxy runs until stopped).

Fairness, decided where rows are handed out: each batch is shared among the clients with
work in proportion to their ``share``, and within a client the recipients of small messages
(at most :data:`SMALL` recipients: a password reset) go ahead of bulk ones. Interleaving is
weighted, so a 100,000-recipient blast never holds another client's mail behind it.

:class:`~bulkmail.proxy.redis_queue.RedisQueue` (``queue: redis://...``) is the same surface
(:class:`ProxyQueue`) over the fleet's Redis, shared by several proxies.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bulkmail.books.base import FINAL_STATES, Books, PendingRow, Recovery, RowOutcome
from bulkmail.errors import JournalError
from bulkmail.intake.base import Batch, Intake
from bulkmail.proxy._db import NewMessage, ProxyDb, QueuedRow
from bulkmail.proxy._group import GroupCommit
from bulkmail.proxy.fanout import Envelope

T = TypeVar("T")
#: A message with at most this many recipients goes ahead of bulk in its client's queue.
SMALL = 5


def new_message_id() -> str:
    """A proxy message id (SES-shaped: hex ms timestamp, uuid, suffix)."""
    return f"{int(time.time() * 1000):016x}-{uuid.uuid4()}-proxy0"


class ProxyQueue(Intake, Books, Protocol):
    """What the proxy needs of its accept queue: the engine's intake and books, plus accept,
    status and the figures the API reports.

    >>> async def serve(queue: ProxyQueue) -> None:                   # doctest: +SKIP
    ...     mids = await queue.accept("AKID1", "sesv2", envelopes)   # durable before the 200
    ...     print(queue.backlog, await queue.status(mids[0], "AKID1"))
    """

    backlog: int
    batch_size: int
    recovery: Recovery

    async def accept(self, client: str, api: str, envelopes: Sequence[Envelope]) -> list[str]:
        """Store the envelopes durably; their proxy message ids."""
        ...

    async def status(self, mid: str, client: str) -> dict[str, Any] | None:
        """``GET /bulkmail/v1/messages/{id}``'s document (None: unknown or not ``client``'s)."""
        ...

    async def sent_last_24h(self) -> int:
        """Recipients sent in the last 24 hours (``GetSendQuota``)."""
        ...

    async def take_over(self, exc: JournalError) -> bool:
        """``exc`` came from :meth:`mark_in_flight`: True if the run may start again."""
        ...

    async def close(self) -> None: ...


class SqliteQueue:
    """The proxy journal behind the Intake and Books seams.

    >>> async def main() -> None:                                        # doctest: +SKIP
    ...     queue = await SqliteQueue.open(Path("proxy.journal.sqlite"), shares={"AKID1": 1})
    ...     mids = await queue.accept("AKID1", "sesv2", [Envelope({...}, None, ["a@x.org"])])
    ...     await queue.close()
    """

    def __init__(
        self,
        db: ProxyDb,
        executor: ThreadPoolExecutor,
        shares: Mapping[str, float],
        *,
        batch_size: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._executor = executor
        self._shares = dict(shares)
        self.batch_size = batch_size
        self._clock = clock
        self.recovery = Recovery(ambiguous=db.requeued, requeued=db.requeued, uncertain=0)
        self._work = asyncio.Event()
        self._cursors: dict[tuple[str, int], int] = {}
        self._handed: dict[int, tuple[str, int]] = {}
        self._commit = GroupCommit(self._write)
        self.backlog = 0  # recipients accepted and not yet final

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        shares: Mapping[str, float],
        results: Path | None = None,
        batch_size: int = 50,
    ) -> SqliteQueue:
        executor = ThreadPoolExecutor(1, thread_name_prefix="bulkmail-proxy-journal")
        loop = asyncio.get_running_loop()
        try:
            db = await loop.run_in_executor(
                executor, functools.partial(ProxyDb.open, path, results=results)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        queue = cls(db, executor, shares, batch_size=batch_size)
        queue.backlog = await queue._run(db.backlog)
        if queue.backlog:
            queue._work.set()
        return queue

    async def close(self) -> None:
        await self._run(self._db.close)
        self._executor.shutdown(wait=True)

    async def take_over(self, exc: JournalError) -> bool:
        """A journal error is a local disk failing: the proxy stops (one process owns it)."""
        return False

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    # -- accept ------------------------------------------------------------------------------

    async def accept(self, client: str, api: str, envelopes: Sequence[Envelope]) -> list[str]:
        """Commit the envelopes (durably) and return their proxy message ids."""
        messages = [
            NewMessage(
                mid=new_message_id(),
                client=client,
                api=api,
                spec=env.spec,
                raw=env.raw,
                recipients=env.recipients,
                lane=0 if len(env.recipients) <= SMALL else 1,
            )
            for env in envelopes
        ]
        await self._commit.submit(messages)
        return [m.mid for m in messages]

    async def _write(self, messages: list[NewMessage]) -> None:
        added = await self._run(self._db.accept, messages, self._clock())
        self.backlog += added
        self._work.set()

    # -- intake ------------------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[Batch]:
        while True:
            self._work.clear()
            rows = await self._take()
            if rows:
                yield Batch(rows, resumed=any(r.possible_duplicate for r in rows))
            else:
                await self._work.wait()

    async def settle(self, batch: Batch) -> None:
        """Nothing to acknowledge: a final state in the journal is the record."""

    async def _take(self) -> list[PendingRow]:
        found = await self._run(self._fetch, self.batch_size)
        chosen = _share_out(found, self._shares, self.batch_size)
        if not chosen:
            return []
        specs = await self._run(self._db.specs, [r.message for r in chosen])
        out = []
        for r in chosen:
            key = (r.client, r.lane)
            self._cursors[key] = max(self._cursors.get(key, 0), r.id)
            self._handed[r.id] = key
            spec, raw = specs[r.message]
            fields = {"message": r.message, "spec": spec, "raw": raw}
            out.append(PendingRow(r.id, r.id, r.email, fields, r.possible_duplicate, r.attempts))
        return out

    def _fetch(self, limit: int) -> dict[str, list[QueuedRow]]:
        """Per client, up to ``limit`` pending rows: small messages first, then bulk."""
        found: dict[str, list[QueuedRow]] = {}
        for client in self._shares:
            rows: list[QueuedRow] = []
            for lane in (0, 1):
                if len(rows) < limit:
                    after = self._cursors.get((client, lane), 0)
                    rows += self._db.take(client, lane, after, limit - len(rows))
            if rows:
                found[client] = rows
        return found

    # -- books -------------------------------------------------------------------------------

    async def mark_in_flight(self, ids: Sequence[int]) -> None:
        await self._run(self._db.mark_in_flight, list(ids), self._clock())

    async def record(self, outcomes: Sequence[RowOutcome]) -> None:
        changed = await self._run(self._db.record, list(outcomes), self._clock())
        self.backlog -= len(changed)
        for o in outcomes:
            key = self._handed.pop(o.id, None)
            if o.state not in FINAL_STATES and key is not None:
                # Given back (drained): hand it out again from where it was.
                self._cursors[key] = min(self._cursors.get(key, 0), o.id - 1)
                self._work.set()

    async def counts(self) -> dict[str, int]:
        return await self._run(self._db.counts)

    async def problem_skips(self) -> int:
        return await self._run(self._db.problem_skips)

    # -- what the API reports ----------------------------------------------------------------

    async def status(self, mid: str, client: str) -> dict[str, Any] | None:
        return await self._run(self._db.status, mid, client)

    async def sent_last_24h(self) -> int:
        return await self._run(self._db.sent_since, self._clock() - 86400.0)


def _share_out(
    found: Mapping[str, list[QueuedRow]], shares: Mapping[str, float], limit: int
) -> list[QueuedRow]:
    """Up to ``limit`` rows shared by weight among the clients that have work, interleaved.

    >>> rows = {c: [QueuedRow(i, 1, c, 1, "x@y.z", False, 0) for i in range(10)]
    ...         for c in ("a", "b")}
    >>> [r.client for r in _share_out(rows, {"a": 1, "b": 1}, 4)]
    ['a', 'b', 'a', 'b']
    """
    remaining = {c: list(rows) for c, rows in found.items() if rows}
    taken: dict[str, list[QueuedRow]] = {c: [] for c in remaining}
    room = limit
    while remaining and room > 0:
        total = sum(shares.get(c, 1.0) for c in remaining)
        budget = room
        for client in list(remaining):
            n = max(1, int(budget * shares.get(client, 1.0) / total))
            n = min(n, room, len(remaining[client]))
            taken[client] += remaining[client][:n]
            remaining[client] = remaining[client][n:]
            room -= n
            if not remaining[client]:
                del remaining[client]
            if room <= 0:
                break
    ordered = [
        (i / shares.get(client, 1.0), client, row)
        for client, rows in taken.items()
        for i, row in enumerate(rows)
    ]
    ordered.sort(key=lambda item: (item[0], item[1]))
    return [row for _, _, row in ordered]


__all__ = ["SMALL", "ProxyQueue", "SqliteQueue", "new_message_id"]
