"""What a run reports: live :class:`Progress` counters and the final :class:`Summary`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from bulkmail.books.base import NO_RECOVERY, Recovery

StopKind = Literal["fatal", "quota", "interrupted", "paused", "unavailable"]


@dataclass(slots=True)
class Progress:
    """Live counters for this run, read by the CLI's progress display.

    >>> p = Progress(); p.sent += 3; p.sent
    3
    """

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
    #: Rows found pending in the books and resumed by this run.
    resumed: int = 0
    already_done: int = 0
    #: Why sending is paused right now (an outage being probed), or None.
    paused: str | None = None

    @property
    def rate(self) -> float:
        if self.first_send_at is None or self.last_send_at is None or self.sent < 2:
            return 0.0
        span = self.last_send_at - self.first_send_at
        return (self.sent - 1) / span if span > 0 else 0.0


@dataclass(slots=True, frozen=True)
class Summary:
    """What a campaign run did, and where the books stand now.

    ``counts`` are the books' totals over every run of this campaign; ``sent_this_run``
    and ``rate`` describe this run only.

    >>> Summary(name="news", counts={"sent": 2, "total": 2}, sent_this_run=2,
    ...         duration=1.0, rate=2.0).exit_code
    0
    """

    name: str
    counts: dict[str, int]
    sent_this_run: int
    duration: float
    rate: float
    recovery: Recovery = NO_RECOVERY
    results: str = ""
    journal: str = ""
    stopped: str | None = None
    stop_kind: StopKind | None = None
    problem_skips: int = 0
    #: Seconds from the start of the run to the first accepted send (None: nothing sent).
    first_send_s: float | None = None

    @property
    def complete(self) -> bool:
        c = self.counts
        return not (c.get("pending", 0) or c.get("in_flight", 0) or c.get("uncertain", 0))

    @property
    def exit_code(self) -> int:
        """0 when every recipient was sent (or deliberately skipped); 2 when a campaign-wide
        problem (bad key, untrusted certificate, unreachable provider) stopped it before
        anything was sent; else 1."""
        if self.stop_kind in ("fatal", "unavailable") and not self.sent_this_run:
            return 2
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


__all__ = ["Progress", "StopKind", "Summary"]
