"""The Pacer seam: when may the next recipients leave, and how did the last ones go.

The engine's :class:`~bulkmail.delivery.sender.Sender` paces every attempt through this
interface. :class:`~bulkmail.pacing.local.RateLimiter` paces one process; the fleet's Redis
limiter paces every worker on an account together. Charges are per recipient: SES and
DirectMail count recipients, not calls.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Pacer(Protocol):
    """What the sender needs from a rate limiter.

    >>> async def attempt(pacer: Pacer, provider, message):            # doctest: +SKIP
    ...     await pacer.acquire(message.cost)      # one unit per recipient
    ...     outcome = await provider.send(message)
    ...     if outcome.verdict is Verdict.THROTTLED:
    ...         pacer.throttled()                  # slow down (everyone sharing the quota)
    ...     elif outcome.ok:
    ...         pacer.succeeded(message.cost)      # recover towards the quota
    """

    @property
    def rate(self) -> float:
        """The configured quota in recipients per second."""
        ...

    @property
    def effective_rate(self) -> float:
        """The rate after any slow-down; sizes the concurrency gate and dispatch batches."""
        ...

    async def acquire(self, cost: int = 1) -> None:
        """Wait until ``cost`` recipients may be released, then claim them."""
        ...

    def succeeded(self, n: int = 1) -> None:
        """``n`` recipients were accepted by the provider."""
        ...

    def throttled(self) -> None:
        """The provider refused a send for exceeding the rate."""
        ...

    def interrupt(self, error: type[BaseException]) -> None:
        """Fail every waiting :meth:`acquire` with ``error()`` (drain or stop)."""
        ...


__all__ = ["Pacer"]
