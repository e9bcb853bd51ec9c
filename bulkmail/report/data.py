"""What a campaign report shows, read from the journal and the event store (read-only).

>>> data = collect("spring", Path("s.journal.sqlite"), Path("ev.sqlite"))  # doctest: +SKIP
>>> data.counts["sent"], data.rate_series[:2]                              # doctest: +SKIP
(9000, [(0.0, 412.0), (5.0, 498.2)])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bulkmail.books.reader import JournalReader
from bulkmail.deliverability.store import EventStore

_STEPS = (
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    21600,
    86400,
)


@dataclass(slots=True)
class ReportData:
    """Everything the page draws. ``rate_series``: (seconds since the first send, sends/s
    in that bucket); ``outcomes``: (status, error code or "") -> rows.

    >>> ReportData(name="spring", counts={}, attempts=Counter({1: 90, 3: 10})).retries
    20
    """

    name: str
    counts: dict[str, int]
    started: str | None = None
    finished: str | None = None
    bucket_s: float = 1
    rate_series: list[tuple[float, float]] = field(default_factory=list)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    skip_codes: dict[str, int] = field(default_factory=dict)
    attempts: Counter[int] = field(default_factory=Counter)
    throttled: int = 0  # rows whose final error was a throttle
    events: Counter[str] = field(default_factory=Counter)
    by_domain: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def retries(self) -> int:
        """Attempts beyond the first, over every row."""
        return sum((n - 1) * rows for n, rows in self.attempts.items() if n > 1)


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def collect(name: str, journal: Path, events: Path | None) -> ReportData:
    """Read one campaign's books (and events, if the store exists)."""
    with JournalReader.open(journal) as books:
        data = ReportData(name=name, counts=books.counts(), skip_codes=books.skip_codes())
        sent_at: list[float] = []
        by_id: dict[str, str] = {}
        for row in books.rows():
            data.outcomes[(row.state, row.error_code or "")] += 1
            if row.attempts:
                data.attempts[row.attempts] += 1
            if row.error_code and "thrott" in row.error_code.lower():
                data.throttled += 1
            if row.state == "sent" and row.finished_at:
                sent_at.append(_when(row.finished_at))
            if row.message_id:
                by_id[row.message_id] = row.email
        for code, n in data.skip_codes.items():
            data.outcomes[("skipped", code)] += n
    if sent_at:
        sent_at.sort()
        first, last = sent_at[0], sent_at[-1]
        data.started, data.finished = _utc(first), _utc(last)
        span = last - first
        step = next((s for s in _STEPS if span / s <= 120), _STEPS[-1])
        buckets: Counter[int] = Counter(int((t - first) // step) for t in sent_at)
        data.bucket_s = step
        data.rate_series = [
            (round(i * step, 3), buckets.get(i, 0) / step) for i in range(max(buckets) + 1)
        ]
    if events is not None and events.is_file():
        with EventStore.open(events, readonly=True) as store:
            for kind, message_id, email, subtype in store.rows():
                if message_id not in by_id:
                    continue  # another campaign's message
                label = _label(kind, subtype)
                data.events[label] += 1
                domain = email.rpartition("@")[2].lower()
                data.by_domain.setdefault(domain, Counter())[label] += 1
    return data


def _utc(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _label(kind: str, subtype: str | None) -> str:
    if kind == "bounce":
        return "hard bounce" if subtype == "Permanent" else "soft bounce"
    return {"complaint": "complaint", "delivery": "delivered", "reject": "rejected"}.get(
        kind, "delayed"
    )


__all__ = ["ReportData", "collect"]
