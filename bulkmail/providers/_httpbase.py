"""The connection lifecycle shared by the providers that speak HTTPS through :class:`HttpPool`.

:class:`~bulkmail.providers.ses.SesProvider` and
:class:`~bulkmail.providers.directmail.DirectMailProvider` differ in what they sign and send,
not in how they hold their connections: both check one endpoint URL when built, open one
keep-alive pool on ``async with`` and close it on the way out. That part is written here once.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from bulkmail.providers.http import HttpPool, PoolOptions


class _PooledHttpProvider:
    """One endpoint, one :class:`HttpPool` opened by ``async with`` and closed after it.

    A subclass calls :meth:`_init_endpoint` from its constructor (at the point where its
    endpoint is known, so errors keep their order) and reads ``self._pool`` when it sends;
    ``self._pool`` is ``None`` outside ``async with``.
    """

    _endpoint: str
    _base_path: str
    _max_connections: int
    _timeout: float
    _pool_options: PoolOptions
    _pool: HttpPool | None

    def _init_endpoint(
        self,
        endpoint: str,
        *,
        max_connections: int,
        timeout: float,
        pool_options: PoolOptions | None = None,
    ) -> None:
        """Check ``endpoint`` is an http(s) URL and remember how to open the pool on it."""
        self._endpoint = endpoint.rstrip("/")
        parts = urlsplit(self._endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint must be an http(s) URL, got {self._endpoint!r}")
        self._base_path = parts.path
        self._max_connections = max_connections
        self._timeout = timeout
        self._pool_options = pool_options or PoolOptions()
        self._pool = None

    async def __aenter__(self) -> Self:
        # Our own keep-alive pool: aiohttp's ClientSession measured ~105-130 µs of CPU per
        # request here, the pool ~25 µs (benchmarks/README.md).
        o = self._pool_options
        self._pool = HttpPool(
            self._endpoint,
            max_connections=self._max_connections,
            timeout=self._timeout,
            idle_timeout=o.idle_timeout,
            max_lifetime=o.max_lifetime,
            max_header_bytes=o.max_header_bytes,
            max_body_bytes=o.max_body_bytes,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
