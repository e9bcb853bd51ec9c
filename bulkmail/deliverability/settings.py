"""The campaign's ``guard:`` block: thresholds for :mod:`bulkmail.deliverability.guard`.

Kept apart from the guard itself so that reading a campaign file needs no journal or store.

>>> GuardSettings(window=500).min_sends
200
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bulkmail.input._yamlconfig import Bad, Checker, describe, integer


@dataclass(frozen=True, kw_only=True, slots=True)
class GuardSettings:
    """Thresholds (fractions, not percents) and the sliding window, in sends.

    >>> GuardSettings().bounce_rate < 0.05 and GuardSettings().complaint_rate < 0.001
    True
    """

    bounce_rate: float = 0.04
    complaint_rate: float = 0.0008
    window: int = 1000
    min_sends: int = 200


def guard_settings(checker: Checker, raw: Any, has_events: bool) -> GuardSettings | None:
    """The campaign's ``guard:`` block checked (problems go to ``checker``); None without
    ``events:`` (nothing to read)."""
    if raw is not None and not has_events:
        checker.bad("guard", "needs 'events:' (the event store bulkmail events writes)")
        return None
    if not has_events:
        return None
    if raw is None:
        return GuardSettings()
    m = checker.mapping(raw, "guard", ("bounce_rate", "complaint_rate", "window", "min_sends"))
    values: dict[str, Any] = {}
    for name in ("bounce_rate", "complaint_rate"):
        value = checker.get(m, f"guard.{name}", _fraction)
        if value is not None:
            values[name] = value
    for name in ("window", "min_sends"):
        value = checker.get(m, f"guard.{name}", integer(1))
        if value is not None:
            values[name] = value
    settings = GuardSettings(**values)
    if settings.min_sends > settings.window:
        checker.bad("guard.min_sends", f"must not be larger than guard.window ({settings.window})")
    return settings


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Bad(f"must be a fraction like 0.04 (= 4 %), got {describe(value)}")
    if not math.isfinite(value) or not 0 < value < 1:
        raise Bad(f"must be a fraction between 0 and 1 (0.04 = 4 %), got {value}")
    return float(value)


__all__ = ["GuardSettings", "guard_settings"]
