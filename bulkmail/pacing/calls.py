"""Pacing whole API calls rather than recipients: DirectMail's ``BatchSendMail``.

aiolimiter fits here (one call at a time, a fixed spacing); the per-recipient quota needs the
strict window of :class:`~bulkmail.pacing.local.RateLimiter` instead.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter


def batch_limiter(region: str = "cn-hangzhou") -> AsyncLimiter:
    """A limiter for ``BatchSendMail`` calls: one call every 3 s (one every 6 s outside China).

    BatchSendMail is limited to 20 calls per 60 s (the API rate-limit table; the older
    "three sending methods" page says 20/min in China and 10/min outside China, so other
    regions get half the rate). ``AsyncLimiter(20, 60)`` would not honour that: aiolimiter is
    a leaky bucket that lets a full bucket (20 calls) through at once and then refills
    continuously, so a window can see 20 calls at its start plus those the bucket leaks back
    during it. ``AsyncLimiter(1, 3)`` holds one call at a time, so calls are at least 3 s
    apart and any 60-s window (t, t + 60] holds at most 20.

    >>> limiter = batch_limiter()
    >>> limiter.max_rate, limiter.time_period
    (1, 3)
    """
    if region == "cn-hangzhou":
        return AsyncLimiter(1, 3)
    return AsyncLimiter(1, 6)


__all__ = ["batch_limiter"]
