"""AWS credentials that stay valid through a long run: a cheap ``current()`` per request.

Temporary credentials (assume-role, SSO, a container or instance role) last 1-12 hours; a
1,000,000-recipient campaign at 14/s takes 20. :class:`AwsCredentialSource` holds one frozen
:class:`~bulkmail.signing.AwsCredentials` and hands it out with no I/O and no lock; once less
than ``margin`` (5 min, or half the lifetime for short ones) remains, the next
:meth:`~AwsCredentialSource.current` starts a refresh in a worker thread and goes on handing
out the old credentials (still valid) until the new ones are in. The send path never waits
for, or does, a credential fetch. A failed refresh keeps the old credentials and tries again
``retry_after`` seconds later; ``last_error`` says why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bulkmail.signing import AwsCredentials

#: What a loader returns: the credentials and when they expire (epoch seconds), or ``None``
#: for long-term keys that never do.
Loaded = tuple[AwsCredentials, float | None]


class AwsCredentialSource:
    """The current AWS credentials, refreshed in the background before they expire.

    >>> source = AwsCredentialSource.static(AwsCredentials("AKID", "secret"))
    >>> source.current().access_key_id, source.expires_at
    ('AKID', None)

    ``load`` is blocking (it may call STS, a container endpoint or IMDS) and runs at
    construction and then only in a worker thread; ``method`` names where the credentials come
    from (``env``, ``shared-credentials-file``, ``assume-role``, ``container-role``,
    ``iam-role``, …) for messages.
    """

    __slots__ = (
        "_load",
        "_clock",
        "margin",
        "retry_after",
        "method",
        "_creds",
        "_expires_at",
        "_refresh_at",
        "_job",
        "refreshes",
        "last_error",
    )

    def __init__(
        self,
        load: Callable[[], Loaded],
        *,
        method: str = "custom",
        clock: Callable[[], float] = time.time,
        margin: float = 300.0,
        retry_after: float = 30.0,
    ) -> None:
        self._load = load
        self._clock = clock
        self.margin = margin
        self.retry_after = retry_after
        self.method = method
        self._job: asyncio.Future[Loaded] | None = None
        #: Refreshes that brought new credentials, and the last refresh error (no secrets).
        self.refreshes = 0
        self.last_error: str | None = None
        self._creds, self._expires_at = load()
        self._refresh_at = self._plan(self._expires_at)

    @classmethod
    def static(cls, credentials: AwsCredentials, *, method: str = "static") -> AwsCredentialSource:
        """Credentials that never change (long-term keys, or keys a test hands in)."""
        return cls(lambda: (credentials, None), method=method)

    @property
    def expires_at(self) -> float | None:
        return self._expires_at

    def current(self) -> AwsCredentials:
        """The credentials to sign with now: no I/O; may start a background refresh."""
        refresh_at = self._refresh_at
        if refresh_at is not None and self._job is None and self._clock() >= refresh_at:
            self._start_refresh()
        return self._creds

    async def refresh(self) -> AwsCredentials:
        """Load new credentials now (in a worker thread) and return them."""
        if self._job is None:
            self._start_refresh()
        job = self._job
        if job is not None:
            await asyncio.wait([job])
        return self._creds

    # -- internals ----------------------------------------------------------------------

    def _plan(self, expires_at: float | None) -> float | None:
        if expires_at is None:
            return None
        left = max(0.0, expires_at - self._clock())
        return expires_at - min(self.margin, left / 2)

    def _start_refresh(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): load inline
            try:
                self._install(self._load())
            except Exception as exc:  # noqa: BLE001 - kept, reported, retried later
                self._failed(exc)
            return
        job = loop.run_in_executor(None, self._load)
        self._job = job
        job.add_done_callback(self._done)

    def _done(self, job: asyncio.Future[Loaded]) -> None:
        self._job = None
        if job.cancelled():
            self._refresh_at = self._clock() + self.retry_after
            return
        exc = job.exception()
        if exc is not None:
            self._failed(exc)
        else:
            self._install(job.result())

    def _install(self, loaded: Loaded) -> None:
        creds, expires_at = loaded
        if creds != self._creds:
            self.refreshes += 1
        self._creds, self._expires_at = creds, expires_at  # one assignment: never half-swapped
        self.last_error = None
        planned = self._plan(expires_at)
        if planned is not None and planned <= self._clock():
            planned = self._clock() + self.retry_after  # the loader gave no fresher ones
        self._refresh_at = planned

    def _failed(self, exc: BaseException) -> None:
        self.last_error = f"refreshing AWS credentials ({self.method}) failed: {type(exc).__name__}"
        self._refresh_at = self._clock() + self.retry_after


__all__ = ["AwsCredentialSource", "Loaded"]
