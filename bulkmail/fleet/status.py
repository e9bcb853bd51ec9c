"""What a fleet campaign looks like from outside: counts, rate, workers, ETA, results.

:func:`campaign_status` is ``bulkmail status``; :func:`export_results` is ``bulkmail
results``, writing the same JSONL schema as a local run's results file (one line per list
row, in list order: ``line, email, status, message_id, error_code, error, attempts,
possible_duplicate, first_attempt_at, finished_at``), atomically.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bulkmail.fleet.books import RedisBooks
from bulkmail.fleet.keys import GROUP, CampaignKeys
from bulkmail.fleet.link import FleetError, Link, decode

#: A worker is alive if its heartbeat is this recent (seconds, Redis time).
ALIVE_WITHIN = 60.0


@dataclass(slots=True)
class FleetStatus:
    """One campaign's state across the fleet.

    >>> FleetStatus("news", {"pending": 10}, rate=5.0).eta_s
    2.0
    """

    name: str
    counts: dict[str, int]
    rate: float = 0.0  # recipients sent per second, last 10 s, all workers
    workers: list[str] = field(default_factory=list)
    queued_chunks: int = 0
    held_chunks: int = 0
    enqueued: bool = False

    @property
    def eta_s(self) -> float | None:
        left = self.counts.get("pending", 0) + self.counts.get("in_flight", 0)
        if not left:
            return 0.0
        return left / self.rate if self.rate > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.name,
            "counts": self.counts,
            "rate": round(self.rate, 1),
            "workers_alive": len(self.workers),
            "workers": self.workers,
            "queued_chunks": self.queued_chunks,
            "held_chunks": self.held_chunks,
            "enqueued": self.enqueued,
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
        }


async def campaign_status(link: Link, name: str) -> FleetStatus:
    keys = CampaignKeys(name)
    if not await link.call(lambda r: r.exists(keys.meta)):
        raise FleetError(f"campaign {name!r} is not in Redis (never enqueued, or expired)")
    counts = await RedisBooks(link, name).counts()

    async def step(r: Any) -> list[Any]:
        pipe = r.pipeline(transaction=False)
        pipe.time()
        pipe.hgetall(keys.persec)
        pipe.zrange(keys.workers, 0, -1, withscores=True)
        pipe.xlen(keys.stream)
        pipe.xpending(keys.stream, GROUP)
        pipe.hget(keys.meta, "enqueued")
        result: list[Any] = await pipe.execute()
        return result

    now, persec, workers, length, pending, enqueued = await link.call(step)
    second = int(now[0])
    recent = sum(int(v) for k, v in persec.items() if second - 10 <= int(k) < second)
    alive = [decode(w) for w, beat in workers if second - float(beat) <= ALIVE_WITHIN]
    held = int(pending["pending"])
    return FleetStatus(
        name,
        counts,
        rate=recent / 10.0,
        workers=alive,
        queued_chunks=max(0, int(length) - held),
        held_chunks=held,
        enqueued=enqueued is not None,
    )


async def export_results(link: Link, name: str, path: Path, *, step: int = 2000) -> int:
    """Write every row's outcome to ``path`` (JSONL, atomically); returns the lines written."""
    keys = CampaignKeys(name)
    through = await link.call(lambda r: r.hget(keys.meta, "through"))
    if through is None:
        raise FleetError(f"campaign {name!r} is not in Redis (never enqueued, or expired)")
    last = int(through)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    written = 0
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            for low in range(1, last + 1, step):
                ids = list(range(low, min(last, low + step - 1) + 1))
                for record in await _records(link, keys, ids):
                    out.write(orjson.dumps(record))
                    out.write(b"\n")
                    written += 1
            out.flush()
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return written


async def _records(link: Link, keys: CampaignKeys, ids: list[int]) -> list[dict[str, Any]]:
    async def step(r: Any) -> list[Any]:
        pipe = r.pipeline(transaction=False)
        for key in (keys.rec, keys.state, keys.out, keys.first, keys.why):
            pipe.hmget(key, ids)
        pipe.smismember(keys.pd, ids)
        result: list[Any] = await pipe.execute()
        return result

    recs, states, outs, firsts, whys, pds = await link.call(step)
    records: list[dict[str, Any]] = []
    for i, rec in enumerate(recs):
        if rec is None:
            continue  # not a row (a CSV header, a row's continuation line)
        base = orjson.loads(rec)
        out = orjson.loads(outs[i]) if outs[i] is not None else {}
        code, reason = None, None
        if whys[i] is not None:
            code, _, reason = decode(whys[i]).partition("\t")
        records.append(
            {
                "line": base["line"],
                "email": base["email"],
                "status": decode(states[i]) if states[i] is not None else "pending",
                "message_id": out.get("message_id"),
                "error_code": out.get("error_code", code),
                "error": out.get("error", reason),
                "attempts": out.get("attempts", 0),
                "possible_duplicate": bool(pds[i]),
                "first_attempt_at": decode(firsts[i]) if firsts[i] is not None else None,
                "finished_at": out.get("finished_at"),
            }
        )
    return records


__all__ = ["ALIVE_WITHIN", "FleetStatus", "campaign_status", "export_results"]
