"""The fleet's Redis parts, arranged for the proxy: key names, scripts, one intake per lane.

The proxy's queue ``NAME`` lives under the fleet's key scheme as the "campaign"
``proxy:NAME`` (``bulkmail:{proxy:NAME}:*``, one cluster slot), so the fleet's books
(:class:`~bulkmail.fleet.books.RedisBooks`: ``state``, ``counts``, ``out``, ``pd``, ``first``)
and its chunk format serve it unchanged. What the proxy adds, in the same slot::

    lane:CLIENT:0|1  a stream per client and lane (0: small messages, 1: bulk), group workers
    m:MID            hash per message: client, api, accepted at, first row id, emails,
                     spec (JSON), raw (the raw message, '' if none); expires after ``keep``
    seq              the last row id given out
    sent24           hash: hour -> recipients sent (GetSendQuota)

It is never in ``bulkmail:campaigns``, so fleet workers leave it alone.

>>> keys = ProxyKeys("default")
>>> keys.lane("AKID1", 0), keys.books.state
('bulkmail:{proxy:default}:lane:AKID1:0', 'bulkmail:{proxy:default}:state')
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bulkmail.fleet.intake import RedisIntake
from bulkmail.fleet.keys import GROUP, CampaignKeys
from bulkmail.fleet.link import Link, decode

#: Scripts of the proxy's own (``bulkmail/proxy/scripts/``); the rest are the fleet's.
_OWN_SCRIPTS = frozenset({"proxy_accept", "proxy_tally"})


def proxy_link(url: str) -> Link:
    """The fleet's :class:`~bulkmail.fleet.link.Link` (retries, backoff, ``EVALSHA``) that
    also runs the proxy's own scripts (``bulkmail/proxy/scripts/``).

    >>> proxy_link("redis://user:pw@127.0.0.1:1/0").display
    'redis://user:***@127.0.0.1:1/0'
    """
    link = Link.from_url(url)
    link.script_packages = ("bulkmail.proxy", "bulkmail.fleet")
    return link


@dataclass(frozen=True, slots=True)
class ProxyKeys:
    """The key names of one proxy queue (see the module docstring)."""

    name: str

    @property
    def books(self) -> CampaignKeys:
        return CampaignKeys(f"proxy:{self.name}")

    def _key(self, part: str) -> str:
        return f"bulkmail:{{proxy:{self.name}}}:{part}"

    def lane(self, client: str, lane: int) -> str:
        return self._key(f"lane:{client}:{lane}")

    def message(self, mid: str) -> str:
        return self._key(f"m:{mid}")

    @property
    def seq(self) -> str:
        return self._key("seq")

    @property
    def sent24(self) -> str:
        return self._key("sent24")


@dataclass(frozen=True, slots=True)
class _LaneStreamKeys(CampaignKeys):
    """The campaign keys with ``stream`` pointing at one lane's stream."""

    lane_stream: str = ""

    @property
    def stream(self) -> str:
        return self.lane_stream


class LaneIntake(RedisIntake):
    """The fleet's stream intake (consumer group, ``XAUTOCLAIM`` after ``visibility``,
    heartbeat, ``chunk_begin``) over one lane's stream; never "done": the proxy waits for
    more until ``stop`` is set.

    >>> async def main(link: Link) -> None:                            # doctest: +SKIP
    ...     lane = LaneIntake(link, ProxyKeys("default"), "AKID1", 0, consumer="a-1")
    ...     async for batch in lane.batches():
    ...         ...
    """

    def __init__(
        self,
        link: Link,
        keys: ProxyKeys,
        client: str,
        lane: int,
        *,
        consumer: str,
        visibility: float,
        stop: asyncio.Event,
        block: float = 0.5,
    ) -> None:
        books = keys.books
        super().__init__(
            link, books.name, consumer=consumer, visibility=visibility, stop=stop, block=block
        )
        self.keys = _LaneStreamKeys(books.name, keys.lane(client, lane))
        self.client = client
        self.lane = lane
        self._own_read = False

    #: A proxy's chunks hold one request's recipients, so a dead proxy may leave dozens:
    #: one a look would take half a second each.
    claim_count = 32

    async def _own_pending(self) -> list[tuple[str, dict[bytes, bytes], bool]]:
        stream = self.keys.stream
        reply = await self.link.call(
            lambda r: r.xreadgroup(GROUP, self.consumer, {stream: "0"}, count=1000)
        )
        return [
            (decode(entry_id), fields, True)
            for _stream, items in reply or []
            for entry_id, fields in items
            if fields and decode(entry_id) not in self.held
        ]

    async def _done(self) -> bool:
        return False  # a proxy's queue is never finished (and has no enqueue meta)

    async def _autoclaim(self) -> list[tuple[str, dict[bytes, bytes], bool]]:
        if not self._own_read:
            # A proxy restarted under the same consumer name (host and port) takes its own
            # unacknowledged chunks back at once rather than after the visibility timeout.
            self._own_read = True
            own = await self._own_pending()
            if own:
                return own
        return await super()._autoclaim()


__all__ = ["LaneIntake", "ProxyKeys", "proxy_link"]
