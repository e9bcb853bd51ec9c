"""A campaign's Redis stream as an :class:`~bulkmail.intake.base.Intake`.

One stream entry is one chunk of rows and one :class:`~bulkmail.intake.base.Batch`. A
worker reads new entries with ``XREADGROUP`` (consumer group ``workers``) and settles a
batch — ``XACK`` and ``XDEL`` — once every row in it has its outcome recorded. An entry
whose worker died stays pending in the group; after ``visibility`` seconds without a
heartbeat any worker takes it over with ``XAUTOCLAIM``. Taking up an entry is one Lua step
(``scripts/chunk_begin.lua``): rows marked in flight become ``possible_duplicate`` (or,
under at-most-once, are held ``uncertain``), rows never started are sent normally, rows
already final are skipped. The heartbeat (``scripts/heartbeat.lua``, every
``visibility / 3``) resets the idle time of the entries this worker still owns, so a slow
but live worker is never robbed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from bulkmail.books.base import PendingRow, timestamp
from bulkmail.fleet.keys import GROUP, CampaignKeys
from bulkmail.fleet.link import Link, decode
from bulkmail.intake.base import Batch

log = logging.getLogger("bulkmail.fleet")


class RedisIntake:
    """Chunks of a campaign's stream for one consumer of the ``workers`` group.

    >>> async def main(link: Link) -> None:                            # doctest: +SKIP
    ...     intake = RedisIntake(link, "news", consumer="host-1-4242", wait=False)
    ...     async for batch in intake.batches():
    ...         ...                                  # send and record every row
    ...         await intake.settle(batch)           # XACK + XDEL

    ``wait`` False: end once the campaign has nothing pending anywhere (``--exit-when-done``);
    True: keep waiting for more until ``stop`` is set.
    """

    def __init__(
        self,
        link: Link,
        name: str,
        *,
        consumer: str,
        visibility: float = 30.0,
        at_most_once: bool = False,
        wait: bool = True,
        stop: asyncio.Event | None = None,
        block: float | None = None,
    ) -> None:
        self.link = link
        self.keys = CampaignKeys(name)
        self.consumer = consumer
        self.visibility = visibility
        self.at_most_once = at_most_once
        self.wait = wait
        self.stop = stop or asyncio.Event()
        # How long one XREADGROUP waits for a new entry. A waiting worker idles at one round
        # trip a second; one that exits when done polls faster (only once the stream is
        # drained), so that the last worker out notices the end within 0.05 s instead of
        # 1 s (1 s was 5 % of a 20 s campaign).
        self.block = block if block is not None else (1.0 if wait else 0.05)
        self.held: dict[str, float] = {}  # entry id -> when taken (monotonic)
        self.finished = False
        self.reclaimed = 0  # entries taken over from another worker
        self.ambiguous = self.requeued = self.uncertain = 0
        self._claim_from = "0-0"

    #: Abandoned entries taken over per ``XAUTOCLAIM``. A campaign's chunks hold hundreds
    #: of rows, so one a look; the proxy's hold one request's recipients and take more.
    claim_count = 1

    async def batches(self) -> AsyncIterator[Batch]:
        beat = asyncio.create_task(self._heartbeat())
        try:
            last_claim = -1e9
            while not self.stop.is_set():
                entries: list[tuple[str, dict[bytes, bytes], bool]] = []
                now = time.monotonic()
                if now - last_claim >= self.visibility / 3:
                    last_claim = now
                    entries = await self._autoclaim()
                if not entries:
                    entries = await self._read()
                if not entries:
                    if await self._done():
                        self.finished = True
                        if not self.wait:
                            return
                    last_claim = -1e9  # nothing new: look for abandoned entries at once
                    continue
                for entry_id, fields, claimed in entries:
                    if entry_id in self.held:
                        continue  # ours already (our heartbeat was late): never twice
                    yield await self._begin(entry_id, fields, claimed)
        finally:
            beat.cancel()
            await asyncio.wait([beat])  # a cancellation of ours still propagates

    async def settle(self, batch: Batch) -> None:
        k = self.keys
        entry_id = str(batch.token)

        async def step(r: Any) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.xack(k.stream, GROUP, entry_id)
            pipe.xdel(k.stream, entry_id)
            await pipe.execute()

        await self.link.call(step)
        self.held.pop(entry_id, None)

    async def release(self) -> int:
        """Make the entries this worker still holds (given back on a drain) reclaimable
        by any worker at once, instead of after the visibility timeout."""
        ids = list(self.held)
        if not ids:
            return 0
        k = self.keys
        idle = int(self.visibility * 1000) * 10
        await self.link.call(
            lambda r: r.xclaim(k.stream, GROUP, self.consumer, 0, ids, idle=idle, justid=True)
        )
        self.held.clear()
        return len(ids)

    async def leave(self) -> int:
        """This worker is done with the campaign (after :meth:`release`): take it out of
        the workers alive, and delete the group's consumers that hold nothing (its own,
        and those of killed workers whose chunks were taken over), so a long-lived group
        does not collect one consumer per worker ever started. Returns how many went."""
        k = self.keys
        gone = await self.link.script(
            "consumer_leave", [k.stream, k.workers], [GROUP, self.consumer]
        )
        return int(gone)

    # -- reading ---------------------------------------------------------------------------

    async def _read(self) -> list[tuple[str, dict[bytes, bytes], bool]]:
        k = self.keys
        reply = await self.link.call(
            lambda r: r.xreadgroup(
                GROUP, self.consumer, {k.stream: ">"}, count=1, block=int(self.block * 1000)
            )
        )
        out: list[tuple[str, dict[bytes, bytes], bool]] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                if fields:
                    out.append((decode(entry_id), fields, False))
        return out

    async def _autoclaim(self) -> list[tuple[str, dict[bytes, bytes], bool]]:
        k = self.keys
        reply = await self.link.call(
            lambda r: r.xautoclaim(
                k.stream,
                GROUP,
                self.consumer,
                min_idle_time=int(self.visibility * 1000),
                start_id=self._claim_from,
                count=self.claim_count,
            )
        )
        self._claim_from = decode(reply[0])
        out: list[tuple[str, dict[bytes, bytes], bool]] = []
        for entry_id, fields in reply[1]:
            if fields:
                out.append((decode(entry_id), fields, True))
        return out

    async def _begin(self, entry_id: str, fields: dict[bytes, bytes], claimed: bool) -> Batch:
        k = self.keys
        rows: list[list[Any]] = orjson.loads(fields[b"rows"])
        ids = [row[0] for row in rows]
        args = [1 if self.at_most_once else 0, timestamp(time.time()), *ids]
        codes = decode(
            await self.link.script("chunk_begin", [k.state, k.pd, k.counts, k.out], args)
        )
        self.held[entry_id] = time.monotonic()
        pending: list[PendingRow] = []
        for (row_id, line, email, row_fields), code in zip(rows, codes, strict=True):
            if code in "pd":
                # A row that was in flight had one attempt at least (what the worker that
                # stopped counted beyond it is lost): attempts add up, as in a local run.
                again = code == "d"
                pending.append(PendingRow(row_id, line, email, row_fields, again, int(again)))
        if claimed:
            self.reclaimed += 1
            self.requeued += codes.count("d")
            self.uncertain += codes.count("u")
            self.ambiguous += codes.count("d") + codes.count("u")
            log.warning(
                "%s: took over chunk %s (%d rows in flight when its worker stopped)",
                k.name, entry_id, codes.count("d") + codes.count("u"),
            )  # fmt: skip
        return Batch(pending, resumed=claimed, token=entry_id, skipped=len(rows) - len(pending))

    async def _done(self) -> bool:
        """The list is fully enqueued and every entry is acknowledged by someone."""
        k = self.keys

        async def step(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.hget(k.meta, "enqueued")
            pipe.xpending(k.stream, GROUP)
            pipe.xlen(k.stream)
            result: list[Any] = await pipe.execute()
            return result

        enqueued, pending, length = await self.link.call(step)
        if enqueued is None or int(pending["pending"]) or int(length):
            return False
        return True

    async def _heartbeat(self) -> None:
        k = self.keys
        while True:
            try:
                lost = await self.link.script(
                    "heartbeat", [k.stream, k.workers], [GROUP, self.consumer, *self.held]
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let a heartbeat error end the worker
                log.warning("%s: heartbeat failed: %s", k.name, type(exc).__name__)
                lost = []
            for entry_id in lost:
                self.held.pop(decode(entry_id), None)
                log.warning(
                    "%s: chunk %s was taken over by another worker", k.name, decode(entry_id)
                )
            await asyncio.sleep(self.visibility / 3)


__all__ = ["RedisIntake"]
