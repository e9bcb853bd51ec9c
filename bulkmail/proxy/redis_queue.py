"""The proxy's accept queue in the fleet's Redis: several proxies, one queue, one quota.

:class:`RedisQueue` has the surface of :class:`~bulkmail.proxy.store.SqliteQueue` (accept,
the :class:`~bulkmail.intake.base.Intake` and :class:`~bulkmail.books.base.Books` seams, status,
backlog), built from the fleet's parts rather than beside them:

- **accept** is one Lua step (``scripts/proxy_accept.lua``, group commit: requests arriving
  together share it) that stores each message, marks its recipients pending and appends them,
  in chunks of at most ``batch_size``, to the stream of the client's lane (``0``: messages of
  at most :data:`~bulkmail.proxy.store.SMALL` recipients, ``1``: bulk). Durable before the 200
  as far as Redis is: with ``appendfsync always`` on disk, with ``everysec`` up to a second of
  accepted mail can be lost if Redis itself crashes.
- **delivery**: each proxy is a consumer of every lane's group
  (:class:`~bulkmail.proxy._redis_lanes.LaneIntake`, the fleet's
  :class:`~bulkmail.fleet.intake.RedisIntake`): a chunk left by a proxy that died is taken
  over after ``visibility`` seconds, its rows that were in flight sent again flagged
  ``possible_duplicate``. Each lane keeps at most one chunk read ahead; :meth:`batches`
  hands them out by weighted fair queueing (each client's virtual time advances by the
  recipients it was handed over its ``share``), a client's small lane before its bulk one.
- **books** are the fleet's :class:`~bulkmail.fleet.books.RedisBooks`, so a message's status
  is answered by any proxy sharing the Redis.

Nothing secret is stored (clients are named by access key id); message content and addresses
are, and expire ``keep`` seconds after the accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from bulkmail.books.base import FINAL_STATES, NO_RECOVERY, PendingRow, RowOutcome, timestamp
from bulkmail.errors import JournalError
from bulkmail.fleet.books import RedisBooks
from bulkmail.fleet.keys import GROUP
from bulkmail.fleet.link import Link, decode
from bulkmail.intake.base import Batch
from bulkmail.pacing.base import Pacer
from bulkmail.pacing.redis import RedisPacer
from bulkmail.providers.config import ProviderConfig
from bulkmail.proxy._db import NewMessage
from bulkmail.proxy._fair import FairLanes
from bulkmail.proxy._group import GroupCommit
from bulkmail.proxy._redis_lanes import LaneIntake, ProxyKeys, proxy_link
from bulkmail.proxy._redis_status import message_status
from bulkmail.proxy.fanout import Envelope
from bulkmail.proxy.store import SMALL, ProxyQueue, new_message_id

if TYPE_CHECKING:
    pass

log = logging.getLogger("bulkmail.proxy")
KEEP = 7 * 86400.0
#: Row ids a proxy reserves at a time (one INCRBY; a restart leaves a gap, never a reuse).
ID_BLOCK = 10_000


class RedisQueue:
    """The proxy's queue in Redis, shared by every proxy pointed at the same URL and name.

    >>> async def main() -> None:                                        # doctest: +SKIP
    ...     queue = await RedisQueue.open("redis://127.0.0.1:6379/0", shares={"AKID1": 1})
    ...     mids = await queue.accept("AKID1", "sesv2", [Envelope({...}, None, ["a@x.org"])])
    ...     print(await queue.status(mids[0], "AKID1"))
    ...     await queue.close()
    """

    def __init__(
        self,
        link: Link,
        accept_link: Link,
        shares: Mapping[str, float],
        *,
        name: str = "default",
        batch_size: int = 50,
        visibility: float = 30.0,
        keep: float = KEEP,
        consumer: str | None = None,
        results: IO[bytes] | None = None,
    ) -> None:
        self.link = link
        self._accept_link = accept_link
        self.keys = ProxyKeys(name)
        self.books = RedisBooks(link, self.keys.books.name)
        self._shares = dict(shares)
        self.batch_size = batch_size
        self.keep = keep
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.recovery = NO_RECOVERY  # rows in flight are recovered as chunks are taken over
        self.backlog = 0  # recipients pending or in flight, every proxy's (refreshed)
        self._results = results
        self.lanes = FairLanes(
            link, self.keys, self._shares, consumer=self.consumer, visibility=visibility
        )
        self._bodies: dict[str, tuple[dict[str, Any], bytes | None] | None] = {}
        self._handed: dict[int, tuple[str, str, bool]] = {}  # row id -> email, mid, flagged
        self._first: dict[int, float] = {}
        self._commit = GroupCommit(self._write)
        self._ids = (0, 0)  # row ids reserved for this proxy: [next, end)
        self._refresher: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        shares: Mapping[str, float],
        name: str = "default",
        results: Path | None = None,
        batch_size: int = 50,
        visibility: float = 30.0,
        keep: float = KEEP,
        consumer: str | None = None,
    ) -> RedisQueue:
        """Connect (give up after 10 s of Redis being away), create the lanes' groups."""
        link, accept_link = proxy_link(url), proxy_link(url)
        accept_link.patience = 5.0  # an accept fails (500: the SDK retries) rather than hang
        out = None
        try:
            link.patience = 10.0
            keys = ProxyKeys(name)
            for client in shares:
                for lane in (0, 1):
                    await link.ensure_group(keys.lane(client, lane), GROUP)
            await _warn_unless_fsync_always(link)
            link.patience = None  # from here on the engine waits for Redis, as workers do
            if results is not None:
                results.parent.mkdir(parents=True, exist_ok=True)
                out = open(results, "ab")  # noqa: SIM115  (closed by close())
        except BaseException:
            await link.close()
            await accept_link.close()
            raise
        queue = cls(link, accept_link, shares, name=name, batch_size=batch_size,
                    visibility=visibility, keep=keep, consumer=consumer, results=out)  # fmt: skip
        await queue.refresh()
        queue._refresher = asyncio.create_task(queue._refresh_loop())
        return queue

    async def close(self) -> None:
        """Give back what this proxy holds (another takes it over at once), disconnect."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        with contextlib.suppress(Exception):
            await self.release()
        await self.link.close()
        await self._accept_link.close()
        if self._results is not None:
            self._results.close()

    async def release(self) -> int:
        """Make every chunk this proxy holds (read ahead, or given back on a drain)
        reclaimable by any proxy now instead of after the visibility timeout."""
        return await self.lanes.release()

    async def take_over(self, exc: JournalError) -> bool:
        """After ``exc`` from :meth:`mark_in_flight` (another proxy took over a chunk while
        this one was too slow to keep it), release what is held; the run may start again."""
        await self.release()
        return True

    # -- accept ------------------------------------------------------------------------------

    async def accept(self, client: str, api: str, envelopes: Sequence[Envelope]) -> list[str]:
        """Store the envelopes (one Lua step per group of requests); their proxy ids."""
        messages = [
            NewMessage(mid=new_message_id(), client=client, api=api, spec=env.spec, raw=env.raw,
                       recipients=env.recipients, lane=0 if len(env.recipients) <= SMALL else 1)
            for env in envelopes
        ]  # fmt: skip
        await self._commit.submit(messages)
        return [m.mid for m in messages]

    async def _write(self, messages: list[NewMessage]) -> None:
        rows = sum(len(m.recipients) for m in messages)
        if not rows:
            return
        if self._ids[0] + rows > self._ids[1]:  # row ids are reserved in blocks, per proxy
            block = max(rows, ID_BLOCK)
            last = int(await self._accept_link.call(lambda r: r.incrby(self.keys.seq, block)))
            self._ids = (last - block + 1, last + 1)
        first = self._ids[0]
        self._ids = (first + rows, self._ids[1])
        keys, args = self._accept_payload(messages, first, rows)
        self.backlog = int(await self._accept_link.script("proxy_accept", keys, args))

    def _accept_payload(
        self, messages: list[NewMessage], first: int, rows: int
    ) -> tuple[list[str], list[Any]]:
        books = self.keys.books
        streams: dict[tuple[str, int], list[list[Any]]] = {}
        margs: list[Any] = []
        row_id = first
        for m in messages:
            margs += [m.client, m.api, row_id, orjson.dumps(list(m.recipients)),
                      orjson.dumps(m.spec), m.raw or b""]  # fmt: skip
            lane = streams.setdefault((m.client, m.lane), [])
            for email in m.recipients:
                lane.append([row_id, row_id, email, {"m": m.mid}])
                row_id += 1
        stream_keys = [self.keys.lane(c, lane) for c, lane in streams]
        entries: list[Any] = []
        for index, chunk in enumerate(streams.values(), start=1):
            for i in range(0, len(chunk), self.batch_size):
                entries += [index, orjson.dumps(chunk[i : i + self.batch_size])]
        keys = [books.state, books.counts, *(self.keys.message(m.mid) for m in messages),
                *stream_keys]  # fmt: skip
        head = [len(messages), len(stream_keys), int(self.keep), first, rows,
                repr(time.time())]  # fmt: skip
        return keys, [*head, *margs, *entries]

    # -- intake ------------------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[Batch]:
        """Chunks from every lane, weighted by client share, small before bulk, with their
        messages' content; waits for more until the run stops."""
        chunks = self.lanes.batches()
        try:
            async for lane, batch in chunks:
                yield await self._with_bodies(lane, batch)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]  # stops the lanes now

    async def _with_bodies(self, lane: LaneIntake, batch: Batch) -> Batch:
        mids = list({str(row.fields["m"]) for row in batch.rows} - set(self._bodies))
        if mids:
            await self._load_bodies(mids)
        rows: list[PendingRow] = []
        gone: list[RowOutcome] = []
        for row in batch.rows:
            mid = str(row.fields["m"])
            body = self._bodies.get(mid)
            if body is None:
                why = "the message's content has expired in Redis"
                gone.append(RowOutcome(row.id, "skipped", error_code="expired", error=why))
                continue
            self._handed[row.id] = (row.email, mid, row.possible_duplicate)
            fields = {"message": mid, "spec": body[0], "raw": body[1]}
            rows.append(PendingRow(row.id, row.line, row.email, fields, row.possible_duplicate,
                                   row.attempts))  # fmt: skip
        if gone:
            await self.books.record(gone)
        extra = {**batch.extra, "lane": lane}
        return Batch(rows, resumed=batch.resumed, token=batch.token,
                     skipped=batch.skipped + len(gone), extra=extra)  # fmt: skip

    async def _load_bodies(self, mids: list[str]) -> None:
        async def step(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for mid in mids:
                pipe.hmget(self.keys.message(mid), "spec", "raw")
            found: list[Any] = await pipe.execute()
            return found

        if len(self._bodies) > 4096:
            self._bodies.clear()  # a message's recipients are near each other in its lane
        for mid, (spec, raw) in zip(mids, await self.link.call(step), strict=True):
            self._bodies[mid] = None if spec is None else (orjson.loads(spec), raw or None)

    async def settle(self, batch: Batch) -> None:
        lane: LaneIntake = batch.extra["lane"]
        await lane.settle(batch)

    # -- books -------------------------------------------------------------------------------

    async def mark_in_flight(self, ids: Sequence[int]) -> None:
        await self.books.mark_in_flight(ids)
        now = time.time()
        for i in ids:
            self._first.setdefault(i, now)

    async def record(self, outcomes: Sequence[RowOutcome]) -> None:
        await self.books.record(outcomes)
        sent = sum(1 for o in outcomes if o.state == "sent")
        if sent:
            await self.link.script("proxy_tally", [self.keys.sent24], [sent])
        finals = [o for o in outcomes if o.state in FINAL_STATES]
        if self._results is not None and finals:
            self._write_results(finals)
        for o in finals:
            self._handed.pop(o.id, None)
            self._first.pop(o.id, None)

    def _write_results(self, outcomes: Sequence[RowOutcome]) -> None:
        assert self._results is not None
        now = timestamp(time.time())
        for o in outcomes:
            email, mid, flagged = self._handed.get(o.id, ("", "", False))
            first = self._first.get(o.id)
            record = {
                "line": o.id, "email": email, "status": o.state, "message_id": o.message_id,
                "error_code": o.error_code, "error": o.error, "attempts": o.attempts,
                "possible_duplicate": flagged or bool(o.possible_duplicate),
                "first_attempt_at": None if first is None else timestamp(first),
                "finished_at": now, "proxy_message_id": mid,
            }  # fmt: skip
            self._results.write(orjson.dumps(record) + b"\n")
        self._results.flush()

    async def counts(self) -> dict[str, int]:
        counts = await self.books.counts()
        counts.setdefault("total", 0)
        return counts

    async def problem_skips(self) -> int:
        return await self.books.problem_skips()

    # -- what the API reports ----------------------------------------------------------------

    async def status(self, mid: str, client: str) -> dict[str, Any] | None:
        return await message_status(self.link, self.keys, mid, client)

    async def sent_last_24h(self) -> int:
        return int(await self.link.script("proxy_tally", [self.keys.sent24], [0]))

    async def refresh(self) -> None:
        """Read the backlog of every proxy sharing the queue (the Throttling bound)."""
        counts = self.keys.books.counts
        got = await self.link.call(lambda r: r.hmget(counts, "pending", "in_flight"))
        self.backlog = sum(int(x or 0) for x in got)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            with contextlib.suppress(Exception):
                await self.refresh()


def shared_pacer(queue: ProxyQueue, provider: ProviderConfig, rate: float) -> Pacer | None:
    """The fleet's pacer on the upstream account, so every proxy (and fleet worker) sending
    on it shares one quota; None when unpaced (a rate the fleet does not pace either)."""
    from bulkmail.fleet.worker import UNPACED, account_key

    if rate >= UNPACED:
        return None
    assert isinstance(queue, RedisQueue)
    return RedisPacer(queue.link, account_key(provider), rate=rate)


async def _warn_unless_fsync_always(link: Link) -> None:
    """Say so when Redis would not keep an accepted message through its own crash."""
    try:
        reply = await link.call(lambda r: r.config_get("append*"), retry=False)
    except Exception:  # CONFIG may be disabled (managed Redis): nothing to check with
        return
    settings = {decode(k): decode(v) for k, v in reply.items()}
    if settings.get("appendonly") != "yes" or settings.get("appendfsync") != "always":
        log.warning(
            "redis at %s has appendonly %s, appendfsync %s: an accepted message survives a "
            "crash of Redis itself only with appendonly yes and appendfsync always",
            link.display, settings.get("appendonly", "?"), settings.get("appendfsync", "?"),
        )  # fmt: skip


__all__ = ["KEEP", "RedisQueue", "shared_pacer"]
