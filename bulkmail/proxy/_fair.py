"""The proxy's fair hand-out over Redis: one fleet stream intake per client and lane,
weighted fair queueing between clients, a client's small lane before its bulk one.

Each lane (:class:`~bulkmail.proxy._redis_lanes.LaneIntake`) runs in its own task and keeps
at most one chunk read ahead (held by this proxy, kept alive by the lane's heartbeat, given
back by :meth:`FairLanes.release`). When the engine asks for work, the ready lane of the
client with the least *virtual time* goes next; a client's virtual time advances by the
recipients it was handed divided by its ``share``, and a client coming back from idle starts
at the current virtual time (no saved-up credit). Chunks hold at most the queue's batch size,
so no client waits behind more than one chunk of another's.

>>> async def main(lanes: FairLanes) -> None:                          # doctest: +SKIP
...     async for lane, batch in lanes.batches():
...         ...                       # send it; then lane.settle(batch)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from bulkmail.fleet.link import FleetError, Link
from bulkmail.intake.base import Batch
from bulkmail.proxy._redis_lanes import LaneIntake, ProxyKeys


@dataclass(slots=True, eq=False)
class Lane:
    """One lane's intake and the chunk it has read ahead (if any)."""

    intake: LaneIntake
    ready: Batch | None = None
    taken: asyncio.Event = field(default_factory=asyncio.Event)


class FairLanes:
    """Every client's two lanes, handed out by weight.

    >>> lanes = FairLanes(link, ProxyKeys("default"), {"AKID1": 1, "AKID2": 3},
    ...                   consumer="a-1", visibility=30)                   # doctest: +SKIP
    """

    def __init__(
        self,
        link: Link,
        keys: ProxyKeys,
        shares: Mapping[str, float],
        *,
        consumer: str,
        visibility: float,
    ) -> None:
        self._shares = dict(shares)
        self._stop = asyncio.Event()
        self.lanes = [
            Lane(LaneIntake(link, keys, client, lane, consumer=consumer,
                            visibility=visibility, stop=self._stop))
            for client in self._shares for lane in (0, 1)
        ]  # fmt: skip
        self._work = asyncio.Event()
        self._vtime = dict.fromkeys(self._shares, 0.0)
        self._now = 0.0

    async def release(self) -> int:
        """Give back every chunk held (read ahead, or left unsettled by a drain)."""
        released = 0
        for lane in self.lanes:
            released += await lane.intake.release()
        return released

    async def batches(self) -> AsyncIterator[tuple[LaneIntake, Batch]]:
        """Chunks by weight until closed; then every lane stops (within its read block)."""
        self._stop.clear()
        pumps = [asyncio.create_task(self._pump(lane)) for lane in self.lanes]
        for pump in pumps:
            pump.add_done_callback(lambda _: self._work.set())
        try:
            while True:
                self._work.clear()
                picked = self._pick()
                if picked is None:
                    for pump in pumps:
                        if pump.done():
                            pump.result()  # a lane's error is the intake's
                            raise FleetError("a lane of the proxy's Redis queue ended")
                    await self._work.wait()
                    continue
                lane, batch = picked
                lane.ready = None
                lane.taken.set()
                yield lane.intake, batch
        finally:
            self._stop.set()
            for lane in self.lanes:
                lane.taken.set()
            _, late = await asyncio.wait(pumps, timeout=2.0)
            for task in late:
                task.cancel()  # a chunk it had just read is taken over after the timeout
            await asyncio.gather(*pumps, return_exceptions=True)
            for lane in self.lanes:
                lane.ready = None  # still held: release() gives it back

    async def _pump(self, lane: Lane) -> None:
        batches = lane.intake.batches()
        try:
            async for batch in batches:
                if self._stop.is_set():
                    return  # read while stopping: held, and given back by release()
                lane.taken.clear()
                lane.ready = batch
                self._work.set()
                await lane.taken.wait()
                if self._stop.is_set():
                    return
        finally:
            await batches.aclose()  # type: ignore[attr-defined]  # ends its heartbeat now

    def _pick(self) -> tuple[Lane, Batch] | None:
        ready = [lane for lane in self.lanes if lane.ready is not None]
        if not ready:
            return None
        for lane in ready:  # a client coming back from idle gets no saved-up credit
            client = lane.intake.client
            self._vtime[client] = max(self._vtime[client], self._now)
        best = min(ready, key=lambda x: (self._vtime[x.intake.client], x.intake.lane))
        client = best.intake.client
        batch = best.ready
        assert batch is not None
        self._now = self._vtime[client]
        cost = max(1, len(batch.rows) + batch.skipped)
        self._vtime[client] += cost / self._shares.get(client, 1.0)
        return best, batch


__all__ = ["FairLanes", "Lane"]
