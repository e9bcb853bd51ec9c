"""``bulkmail check``: validate a campaign and every recipient row without sending anything."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulkmail.books.base import BENIGN_SKIP_CODES
from bulkmail.input.campaign import Campaign
from bulkmail.input.compose import Composer
from bulkmail.input.recipients import Recipient, read_recipients, read_suppressed
from bulkmail.input.render import RenderProblem


def load_campaign(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Campaign:
    """Parse and validate a campaign file; raises :class:`ConfigError` naming what is wrong."""
    return Campaign.from_file(path, overrides=overrides)


@dataclass(slots=True)
class CheckReport:
    """What ``bulkmail check`` found: would-send count and every problem row (first few).

    >>> CheckReport(campaign="news", rows=3, would_send=3).problems
    0
    """

    campaign: str
    rows: int = 0
    would_send: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return sum(n for code, n in self.skipped.items() if code not in BENIGN_SKIP_CODES)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "rows": self.rows,
            "would_send": self.would_send,
            "skipped": dict(self.skipped),
            "problems": self.problems,
            "examples": self.examples,
            "variables": self.variables,
        }


def check_campaign(
    campaign: Campaign | str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    max_examples: int = 20,
) -> CheckReport:
    """Validate the campaign and every recipient row without sending anything.

    Uses a throw-away journal for duplicate detection, so memory stays flat on any list size.
    """
    if not isinstance(campaign, Campaign):
        campaign = load_campaign(campaign, overrides)
    composer = Composer.for_campaign(campaign)
    composer.check_list(campaign)
    report = CheckReport(campaign=campaign.name, variables=sorted(composer.variables))

    def note(line: int, email: str, code: str, reason: str) -> None:
        report.skipped[code] += 1
        if len(report.examples) < max_examples:
            report.examples.append({"line": line, "email": email, "code": code, "reason": reason})

    import tempfile  # here: a fleet worker imports this module and never checks a list

    from bulkmail.books.journal import Journal

    with tempfile.TemporaryDirectory(prefix="bulkmail-check-") as tmp:
        journal, _ = Journal.open(
            Path(tmp) / "check.sqlite",
            campaign_hash="",
            list_hash="",
            synchronous="NORMAL",  # thrown away: no need to survive power loss
            reserve=0,
        )
        with journal:
            if campaign.suppress is not None:
                journal.load_suppressed(read_suppressed(campaign.suppress))
            chunk: list[Recipient] = []
            rejected: list[Any] = []

            def flush(last: bool, through: int) -> None:
                for row in journal.add_rows(chunk, rejected, through_line=through, last=last):
                    rendered = composer.compose(
                        Recipient(line=row.line, email=row.email, key="", fields=row.fields)
                    )
                    if isinstance(rendered, RenderProblem):
                        note(row.line, row.email, rendered.code, rendered.reason)
                    else:
                        report.would_send += 1
                chunk.clear()
                rejected.clear()

            line = 0
            for item in read_recipients(campaign.recipients):
                report.rows += 1
                line = item.line
                if isinstance(item, Recipient):
                    chunk.append(item)
                else:
                    rejected.append(item)
                    note(item.line, item.email, item.code, item.reason)
                if len(chunk) + len(rejected) >= 1000:
                    flush(False, line)
            flush(True, line)
            for skip in journal.skips(codes=BENIGN_SKIP_CODES):
                note(skip["line"], skip["email"], skip["code"], skip["reason"])
    return report


__all__ = ["CheckReport", "check_campaign", "load_campaign"]
