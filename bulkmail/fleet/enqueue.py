"""Put a campaign into Redis: its definition, then its list as a stream of chunks.

:func:`enqueue_campaign` is what ``bulkmail enqueue`` runs; :class:`Enqueuer` is the part
any producer can use (rows in, stream out) — the SES-compatible proxy pushes the messages it
accepts through it. Each chunk is one atomic step (``scripts/enqueue_chunk.lua``): dedupe
(the journal's key rules: :func:`~bulkmail.input.recipients.address_key`, first row wins)
and suppression are applied, skipped rows are recorded for the results, the sendable rows
become one stream entry, and the campaign's ``through`` (last line enqueued) moves on.
Running it again resumes after ``through``; a row id already present is never added twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from redis import exceptions as rexc

from bulkmail.errors import ConfigError
from bulkmail.fleet.definition import campaign_to_data
from bulkmail.fleet.keys import CAMPAIGNS, GROUP, CampaignKeys
from bulkmail.fleet.link import FleetError, Link, decode
from bulkmail.input.campaign import Campaign
from bulkmail.input.recipients import (
    Recipient,
    Rejected,
    list_fingerprint,
    read_recipients,
    read_suppressed,
)

#: Rows per stream entry: what one worker takes (and a dead one holds) at a time.
CHUNK = 200
#: How long a finished campaign's data stays in Redis (``--expire``).
DEFAULT_TTL = 7 * 86400


@dataclass(slots=True)
class EnqueueReport:
    """What one ``enqueue`` did.

    >>> EnqueueReport("news", enqueued=3).enqueued
    3
    """

    name: str
    enqueued: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    already: int = 0  # rows present from an earlier run
    resumed_after: int = 0  # the line an earlier run had reached
    through: int = 0
    chunks: int = 0


class Enqueuer:
    """Append rows to a campaign's stream in order; ``through`` is the last row id added.

    >>> async def push(link: Link) -> None:                            # doctest: +SKIP
    ...     enq = await Enqueuer.open(link, "news")
    ...     await enq.push([Recipient(2, "ana@example.com", "ana@example.com", {})],
    ...                    through=2, last=True)
    """

    def __init__(self, link: Link, name: str, through: int) -> None:
        self.link = link
        self.keys = CampaignKeys(name)
        self.through = through

    @classmethod
    async def open(cls, link: Link, name: str) -> Enqueuer:
        keys = CampaignKeys(name)
        through = await link.call(lambda r: r.hget(keys.meta, "through"))
        return cls(link, name, int(through or 0))

    async def push(
        self, items: Sequence[Recipient | Rejected], *, through: int, last: bool
    ) -> tuple[int, int, int]:
        """Add ``items`` (ids = their lines, increasing); ``(sendable, skipped, already)``."""
        k = self.keys
        args: list[str | bytes | int] = [self.through, through, len(items), 1 if last else 0]
        for item in items:
            rec = orjson.dumps({"line": item.line, "email": item.email})
            if isinstance(item, Recipient):
                row = orjson.dumps([item.line, item.line, item.email, dict(item.fields)])
                args += [item.line, item.key, "", rec, row]
            else:
                args += [item.line, "", f"{item.code}\t{item.reason}", rec, b""]
        keys = [k.meta, k.state, k.rec, k.seen, k.suppressed, k.stream, k.counts, k.why]
        try:
            result = await self.link.script("enqueue_chunk", keys, args)
        except rexc.ResponseError as exc:
            if "BMSTALE" not in str(exc):
                raise
            now = await self.link.call(lambda r: r.hget(k.meta, "through"))
            if int(now or 0) != through:  # not our own step, applied before a lost answer
                raise FleetError(
                    f"campaign {k.name!r}: another enqueue is running "
                    f"(it reached line {decode(now)})"
                ) from None
            result = [0, 0, len(items)]
        self.through = through
        return int(result[0]), int(result[1]), int(result[2])


async def store_definition(
    link: Link, campaign: Campaign, *, at_most_once: bool, ttl: int, list_hash: str
) -> int:
    """Store (or check) the campaign's definition; returns the line enqueued so far.

    :raises ConfigError: the stored campaign of that name has other content or another list.
    """
    keys = CampaignKeys(campaign.name)
    content = campaign.content_hash()
    stored = await link.call(lambda r: r.hmget(keys.meta, ["content_hash", "list_hash"]))
    if stored[0] is not None:
        if decode(stored[0]) != content:
            raise ConfigError(
                f"campaign {campaign.name!r} is already in Redis with other content; give "
                "this one another name",
                file=str(campaign.path),
                key="name",
            )
        if decode(stored[1]) != list_hash:
            raise ConfigError(
                f"campaign {campaign.name!r} is already in Redis with another list (lines "
                "would shift); give this one another name",
                file=str(campaign.path),
                key="recipients",
            )
    definition, files = campaign_to_data(campaign)
    mapping: dict[str, bytes | str | int] = {
        "definition": definition,
        "files": len(files),
        "content_hash": content,
        "list_hash": list_hash,
        "at_most_once": 1 if at_most_once else 0,
        "ttl": ttl,
    }
    for i, data in enumerate(files):
        mapping[f"file:{i}"] = data

    async def write(r: object) -> None:
        pipe = link.client.pipeline(transaction=True)
        pipe.hset(keys.meta, mapping=mapping)  # type: ignore[arg-type]
        pipe.hsetnx(keys.meta, "created", f"{time.time():.3f}")
        pipe.sadd(CAMPAIGNS, campaign.name)
        await pipe.execute()

    await link.call(write)
    await link.ensure_group(keys.stream, GROUP)
    through = await link.call(lambda r: r.hget(keys.meta, "through"))
    return int(through or 0)


async def load_suppressed(link: Link, name: str, path: Path) -> int:
    """Add the suppression file's keys (lower-cased, as the journal does); returns how many."""
    keys = CampaignKeys(name)
    reader = await asyncio.to_thread(read_suppressed, path)
    total = 0
    while True:
        batch = await asyncio.to_thread(_take, reader, 2000)
        if not batch:
            return total
        total += len(batch)
        await _add_suppressed(link, keys.suppressed, [k.lower() for k in batch])


async def _add_suppressed(link: Link, key: str, members: list[str]) -> None:
    await link.call(lambda r: r.sadd(key, *members))


def _take(reader: Iterator[str], n: int) -> list[str]:
    out: list[str] = []
    for item in reader:
        out.append(item)
        if len(out) >= n:
            break
    return out


async def enqueue_campaign(
    link: Link,
    campaign: Campaign,
    *,
    at_most_once: bool = False,
    ttl: int = DEFAULT_TTL,
    chunk: int = CHUNK,
) -> EnqueueReport:
    """Store ``campaign`` and stream its list (resuming after what is already there)."""
    list_hash = await asyncio.to_thread(list_fingerprint, campaign.recipients)
    through = await store_definition(
        link, campaign, at_most_once=at_most_once, ttl=ttl, list_hash=list_hash
    )
    report = EnqueueReport(campaign.name, resumed_after=through, through=through)
    if campaign.suppress is not None:
        await load_suppressed(link, campaign.name, campaign.suppress)
    enqueuer = Enqueuer(link, campaign.name, through)
    reader = read_recipients(campaign.recipients, start_after_line=through)
    while True:
        items, last = await asyncio.to_thread(_chunk, reader, chunk)
        if not items and not last:
            continue
        line = items[-1].line if items else enqueuer.through
        sendable, skipped, already = await enqueuer.push(items, through=line, last=last)
        report.enqueued += sendable
        report.already += already
        report.chunks += 1 if sendable else 0
        report.through = line
        if skipped:
            report.skipped.update(_skip_codes(items, sendable, skipped))
        if last:
            return report


def _chunk(
    reader: Iterator[Recipient | Rejected], n: int
) -> tuple[list[Recipient | Rejected], bool]:
    items: list[Recipient | Rejected] = []
    for item in reader:
        items.append(item)
        if len(items) >= n:
            return items, False
    return items, True


def _skip_codes(items: Sequence[Recipient | Rejected], sendable: int, skipped: int) -> Counter[str]:
    """The codes of a chunk's skips: invalid rows by code, the rest duplicate/suppressed."""
    codes: Counter[str] = Counter(i.code for i in items if isinstance(i, Rejected))
    other = skipped - sum(codes.values())
    if other > 0:
        codes["duplicate_or_suppressed"] += other
    return codes


__all__ = [
    "CHUNK",
    "DEFAULT_TTL",
    "EnqueueReport",
    "Enqueuer",
    "enqueue_campaign",
    "load_suppressed",
    "store_definition",
]
