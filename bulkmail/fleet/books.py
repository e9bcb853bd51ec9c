"""Books in Redis: the :class:`~bulkmail.books.base.Books` seam shared by every worker.

Each method is one Lua step (``scripts/mark_in_flight.lua``, ``scripts/record.lua``),
atomic on the server and safe to run again when an answer was lost: a retried
``mark_in_flight`` accepts rows it already moved, ``record`` leaves final rows untouched.
Counts are kept by the same steps in one hash, so reading them is one round trip.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from redis import exceptions as rexc

from bulkmail.books.base import BENIGN_SKIP_CODES, RowOutcome, timestamp
from bulkmail.errors import JournalError
from bulkmail.fleet.keys import CampaignKeys
from bulkmail.fleet.link import Link, decode

_STATES = ("pending", "in_flight", "sent", "failed", "skipped", "uncertain")


class RedisBooks:
    """A campaign's per-recipient state in Redis.

    >>> async def main(link: Link) -> None:                            # doctest: +SKIP
    ...     books = RedisBooks(link, "news")
    ...     await books.mark_in_flight([2, 3])
    ...     await books.record([RowOutcome(2, "sent", message_id="m-1", attempts=1)])
    ...     print(await books.counts())
    """

    def __init__(self, link: Link, name: str) -> None:
        self.link = link
        self.keys = CampaignKeys(name)

    async def mark_in_flight(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        k = self.keys
        attempt = 0

        def retried() -> None:
            nonlocal attempt
            attempt += 1

        async def step(r: Any) -> Any:
            args = [1 if attempt else 0, timestamp(time.time()), *ids]
            return await self.link._evalsha(r, "mark_in_flight", [k.state, k.counts, k.first], args)

        try:
            await self.link.call(step, on_retry=retried)
        except rexc.ResponseError as exc:
            if "BMNOTPENDING" in str(exc):
                raise JournalError(f"campaign {k.name!r}: {str(exc).split(' ', 1)[1]}") from None
            raise

    async def record(self, outcomes: Sequence[RowOutcome]) -> None:
        if not outcomes:
            return
        k = self.keys
        finished = timestamp(time.time())
        args: list[Any] = [len(outcomes)]
        for o in outcomes:
            doc = {
                "message_id": o.message_id,
                "error_code": o.error_code,
                "error": o.error,
                "attempts": o.attempts,
                "finished_at": None if o.state == "pending" else finished,
            }
            args += [o.id, o.state, 1 if o.possible_duplicate else 0, orjson.dumps(doc)]
        await self.link.script("record", [k.state, k.counts, k.pd, k.out, k.persec], args)

    async def counts(self) -> dict[str, int]:
        k = self.keys

        async def step(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.hgetall(k.counts)
            pipe.scard(k.pd)
            result: list[Any] = await pipe.execute()
            return result

        raw, pd = await self.link.call(step)
        counts = {state: 0 for state in _STATES}
        for key, value in raw.items():
            counts[decode(key)] = int(value)
        counts["possible_duplicate"] = int(pd)
        return counts

    async def problem_skips(self) -> int:
        """Rows skipped for a reason other than housekeeping (dedupe, suppression)."""
        k = self.keys
        problems = 0
        cursor = 0
        while True:
            cursor, chunk = await self.link.call(
                lambda r, c=cursor: r.hscan(k.why, c, count=1000)  # type: ignore[misc]
            )
            for value in chunk.values():
                if decode(value).split("\t", 1)[0] not in BENIGN_SKIP_CODES:
                    problems += 1
            if not cursor:
                break
        return problems + await self._render_skips()

    async def _render_skips(self) -> int:
        """Rows the workers skipped (a template variable missing): counted from outcomes."""
        k = self.keys
        counts = await self.counts()
        why = await self.link.call(lambda r: r.hlen(k.why))
        return max(0, counts.get("skipped", 0) - int(why))


__all__ = ["RedisBooks"]
