"""The contract between the engine and a wire protocol.

A provider sends *one attempt* of one :class:`~bulkmail.mail.message.Message` and describes what
happened as an :class:`Outcome` value. Retrying, pacing and bookkeeping belong to the engine;
signing belongs to :mod:`bulkmail.signing`. Each call to :meth:`Provider.send` signs afresh,
so a retry always carries a new date (and, for DirectMail, a new nonce).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Protocol, runtime_checkable

from bulkmail._frozen import fast_init
from bulkmail.mail.message import Message


class Verdict(StrEnum):
    """How the engine should treat the answer to one attempt."""

    #: Accepted by the provider; ``Outcome.message_id`` is set.
    SENT = "sent"
    #: Refused over the rate: not accepted, retry after backing off and slow the whole campaign.
    THROTTLED = "throttled"
    #: Transient failure where the request was certainly *not* accepted (5xx answer,
    #: connection refused): safe to retry.
    RETRY = "retry"
    #: The request may have been accepted but no answer came (timeout, reset after sending).
    AMBIGUOUS = "ambiguous"
    #: Permanent for this recipient (bad address, message rejected): record and move on.
    REJECTED = "rejected"
    #: Nothing more can succeed (bad key, unverified sender, paused account): stop.
    FATAL = "fatal"
    #: Daily quota exhausted: pause the campaign, resumable later.
    QUOTA = "quota"


@fast_init
@dataclass(slots=True, frozen=True)
class Outcome:
    """The answer to one attempt, as a value.

    >>> Outcome(Verdict.SENT, message_id="0100018c-abc").ok
    True

    ``error`` is a human-readable text that has already been scrubbed of anything secret
    (providers never copy a server's echo of the string to sign, or credentials).
    """

    verdict: Verdict
    message_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    #: Seconds the provider asked us to wait (Retry-After), if it said.
    retry_after: float | None = None
    #: Seconds the service itself took (request written to answer read), if the transport
    #: can tell; the concurrency gate sizes itself from it.
    service_time: float | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.SENT


@dataclass(slots=True, frozen=True)
class Quota:
    """An account's sending quota as the provider reports it.

    >>> Quota(max_send_rate=14.0, max_24h=50000.0, sent_last_24h=1000.0).remaining_today
    49000.0
    """

    max_send_rate: float
    max_24h: float | None = None
    sent_last_24h: float | None = None

    @property
    def remaining_today(self) -> float | None:
        if self.max_24h is None or self.max_24h < 0:  # SES reports -1 for unlimited
            return None
        return max(0.0, self.max_24h - (self.sent_last_24h or 0.0))


@runtime_checkable
class Provider(Protocol):
    """What the engine needs from a wire protocol.

    Used as an async context manager that owns its connections::

        async with SesProvider(...) as provider:
            outcome = await provider.send(message)
    """

    #: Short name used in logs and results: ``ses``, ``directmail``, ``smtp``.
    name: str

    async def __aenter__(self) -> Provider: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def send(self, message: Message) -> Outcome:
        """Send one attempt of ``message``; never raises for a per-recipient problem."""
        ...

    async def get_quota(self) -> Quota | None:
        """The account's quota, or ``None`` when the protocol cannot tell."""
        ...


__all__ = ["Outcome", "Provider", "Quota", "Verdict"]
