"""The account the sandbox plays: what a parsed, authenticated send meets before its answer.

Faults (:class:`Faults`) are drawn per send from a seeded RNG, so a run is reproducible; sends
count their recipients (To + Cc + Bcc) against a strict 1-second sliding window (``quota``)
and a 24-hour total (``daily_quota``), refused with the API's own throttling error; an
accepted send is counted, recorded (:class:`Accepted`) and written to the outbox.
:class:`~bulkmail.servers.sandbox.Sandbox` serves the wire in front of it.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkmail.servers import _directmail as dm
from bulkmail.servers import _ses as ses
from bulkmail.servers._wire import ApiError, Quota, SendRequest, build_eml

_DAY = 86400.0
_UNLIMITED = 1_000_000_000.0  # what the quota actions report when no quota is set
_STATS = (
    "accepted",
    "recipients",
    "throttled",
    "signature_failures",
    "nonce_reused",
    "errors_injected",
    "resets",
    "lost",
    "slowed",
    "rejected",
    "bulk_calls",
)


@dataclass(kw_only=True)
class Faults:
    """Per-send fault probabilities, drawn from ``random.Random(seed)``; all default 0.

    One uniform draw per send picks at most one of: ``reset_before`` (the connection is
    closed without an answer and the message is *not* accepted), ``error_500``,
    ``error_503``, ``lost_after_accept`` (accepted and recorded, then the connection is
    closed without an answer) or ``slow`` (the answer comes ``slow_seconds`` late; the
    message is accepted when the wait ends). ``latency`` is added to every answer.

    >>> Faults(seed=7, error_503=0.1, latency=0.002)
    Faults(seed=7, error_500=0, error_503=0.1, reset_before=0, lost_after_accept=0, slow=0, \
slow_seconds=1.0, latency=0.002)
    """

    seed: int = 0
    error_500: float = 0
    error_503: float = 0
    reset_before: float = 0
    lost_after_accept: float = 0
    slow: float = 0
    slow_seconds: float = 1.0
    latency: float = 0.0

    def __post_init__(self) -> None:
        odds = (
            self.reset_before,
            self.error_500,
            self.error_503,
            self.lost_after_accept,
            self.slow,
        )
        if any(p < 0 for p in odds) or sum(odds) > 1:
            raise ValueError("fault probabilities must be >= 0 and add up to at most 1")
        if self.slow_seconds < 0 or self.latency < 0:
            raise ValueError("slow_seconds and latency must be >= 0")


@dataclass(frozen=True)
class Accepted:
    """One accepted message. ``to`` is the To list (Cc/Bcc are in ``params``); ``headers``
    are the extra headers of simple content, or every header of a raw message; ``params``
    is the whole parsed request (the JSON document or the form)."""

    api: str
    message_id: str
    to: tuple[str, ...]
    sender: str
    subject: str
    text: str | None
    html: str | None
    raw: bytes | None
    headers: tuple[tuple[str, str], ...]
    params: Mapping[str, Any]
    received_at: float


class Account:
    """Quotas, fault dice, statistics and accepted messages of one sandbox.

    ``stats`` counts what the account decided (the server adds its own refusals to the same
    dict); ``accepted`` holds every accepted message when ``record`` is on.

    >>> account = Account(quota=2, daily_quota=None, outbox=None, faults=Faults(),
    ...                   clock=lambda: 0.0, record=True)
    >>> account.quota_now().max_send_rate
    2.0
    """

    def __init__(
        self,
        *,
        quota: float | None,
        daily_quota: int | None,
        outbox: Path | None,
        faults: Faults,
        clock: Callable[[], float],
        record: bool,
    ) -> None:
        if quota is not None and quota <= 0:
            raise ValueError("quota must be > 0 recipients per second (or None)")
        if daily_quota is not None and daily_quota < 0:
            raise ValueError("daily_quota must be >= 0 (or None)")
        self._quota = quota
        self._daily_quota = daily_quota
        self._outbox = outbox
        self._faults = faults
        f = faults
        self._has_faults = any(
            (f.reset_before, f.error_500, f.error_503, f.lost_after_accept, f.slow)
        )
        self._rng = random.Random(faults.seed)
        self._clock = clock
        self._record = record
        self._window: deque[tuple[float, int]] = deque()
        self._window_sum = 0
        self._day: deque[tuple[float, int]] = deque()
        self._day_sum = 0
        self.accepted: list[Accepted] = []
        self.stats: dict[str, int] = dict.fromkeys(_STATS, 0)

    def _prune(self, now: float) -> None:
        window, horizon = self._window, now - 1.0
        while window and window[0][0] <= horizon:
            self._window_sum -= window.popleft()[1]
        day, horizon = self._day, now - _DAY
        while day and day[0][0] <= horizon:
            self._day_sum -= day.popleft()[1]

    def quota_now(self) -> Quota:
        self._prune(self._clock())
        return Quota(
            max_send_rate=float(self._quota) if self._quota is not None else _UNLIMITED,
            max_24h=float(self._daily_quota) if self._daily_quota is not None else _UNLIMITED,
            sent_24h=float(self._day_sum),
        )

    def _over_quota(self, count: int, api: str) -> ApiError | None:
        now = self._clock()
        self._prune(now)
        v2 = api == "sesv2"
        if self._daily_quota is not None and self._day_sum + count > self._daily_quota:
            return ses.daily_exceeded(v2) if not api.startswith("directmail") else dm.DAILY_EXCEEDED
        if self._quota is not None and self._window_sum + count > self._quota:
            return ses.throttled(v2) if not api.startswith("directmail") else dm.THROTTLED
        return None

    async def deliver(
        self, send: SendRequest, injected: Callable[[int], ApiError], drop: Callable[[], Exception]
    ) -> str:
        """Faults, quotas, then acceptance; the new message id, or raises.

        ``drop()`` closes the connection without an answer and returns the exception to raise.
        """
        faults = self._faults
        lost = False
        if self._has_faults:
            u = self._rng.random()
            if u < faults.reset_before:
                self.stats["resets"] += 1
                raise drop()
            u -= faults.reset_before
            if u < faults.error_500 + faults.error_503:
                self.stats["errors_injected"] += 1
                raise injected(500 if u < faults.error_500 else 503)
            u -= faults.error_500 + faults.error_503
            if u < faults.lost_after_accept:
                lost = True
            elif u - faults.lost_after_accept < faults.slow:
                self.stats["slowed"] += 1
                await asyncio.sleep(faults.slow_seconds)
        refusal = self._over_quota(send.recipients, send.api)
        if refusal is not None:
            self.stats["throttled"] += 1
            raise refusal
        message_id = self._accept(send)
        if lost:
            self.stats["lost"] += 1
            raise drop()
        return message_id

    def _accept(self, send: SendRequest) -> str:
        now = self._clock()
        count = send.recipients
        message_id = (
            dm.new_env_id() if send.api.startswith("directmail") else ses.new_message_id(now)
        )
        self._window.append((now, count))
        self._window_sum += count
        self._day.append((now, count))
        self._day_sum += count
        self.stats["accepted"] += 1
        self.stats["recipients"] += count
        if self._record:
            self.accepted.append(
                Accepted(
                    api=send.api,
                    message_id=message_id,
                    to=send.to,
                    sender=send.sender,
                    subject=send.subject,
                    text=send.text,
                    html=send.html,
                    raw=send.raw,
                    headers=send.headers,
                    params=send.params,
                    received_at=now,
                )
            )
        if self._outbox is not None:
            final = self._outbox / f"{message_id}.eml"
            partial = self._outbox / f".{message_id}.part"
            partial.write_bytes(build_eml(send, message_id, now))
            os.replace(partial, final)  # a reader never sees half a message
        return message_id
