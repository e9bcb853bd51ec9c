"""Guards: checks the engine runs while sending that may pause a campaign.

A guard answers "should this campaign stop sending now?" — for example the deliverability
guard, when the campaign's own bounce or complaint rate passes its thresholds. The engine
polls every guard every few seconds; a reason pauses the run with rows still pending.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Guard(Protocol):
    """Something that may pause a running campaign.

    >>> class Never:
    ...     async def check(self) -> str | None:
    ...         return None
    >>> isinstance(Never(), Guard)
    True
    """

    async def check(self) -> str | None:
        """A reason to pause sending now, or ``None`` to go on."""
        ...


__all__ = ["Guard"]
