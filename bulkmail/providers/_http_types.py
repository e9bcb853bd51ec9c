"""What :class:`~bulkmail.providers.http.HttpPool` hands back: its answers and its errors.

The tree is drawn, with what each failure means for a retry, in
:mod:`bulkmail.providers.http`, which re-exports every name here.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from bulkmail._frozen import fast_init


class HttpError(Exception):
    """Base of every error :class:`HttpPool` raises."""


class ConnectFailed(HttpError, ConnectionError):
    """No connection could carry the request; nothing was written, so it is safe to retry."""


class CertificateInvalid(ConnectFailed):
    """The server's TLS certificate or host name did not verify: nothing was written, and no
    retry can succeed until the client trusts its CA."""

    def __init__(self, host: str, error: ssl.SSLCertVerificationError) -> None:
        super().__init__(f"cannot verify the TLS certificate of {host}: {error}")
        self.host = host
        self.error = error


class ResponseLost(HttpError, ConnectionError):
    """The request was (maybe partly) written but no complete, well-formed answer came."""


class ResponseTooLarge(ResponseLost):
    """The answer's headers or body passed the pool's cap; the connection was dropped."""


class Timeout(HttpError, TimeoutError):
    """No complete answer before the deadline; the connection was closed."""


class Headers(Mapping[str, str]):
    """Response headers, names stored lowercased; lookups ignore case.

    >>> Headers({"retry-after": "2"})["Retry-After"]
    '2'
    """

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._items.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(slots=True, frozen=True, kw_only=True)
class PoolOptions:
    """How :class:`~bulkmail.providers.http.HttpPool` keeps its connections.

    >>> PoolOptions(idle_timeout=2.0).max_lifetime
    60.0

    ``idle_timeout`` stays below common servers' keep-alive timeouts (many close after 5 s;
    AWS endpoints have been seen closing after ~20 s), so an idle connection is dropped by
    us before the server's close can race a request. ``max_lifetime`` retires a connection
    however busy it is, so a DNS change (a moved endpoint, a drained node) is seen.
    """

    idle_timeout: float = 4.0
    max_lifetime: float = 60.0
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 8 * 1024 * 1024


@fast_init
@dataclass(slots=True, frozen=True)
class Response:
    status: int
    headers: Headers
    body: bytes
    #: Seconds from the request written to the answer read: the service's own time, without
    #: waiting for a connection (sizes the concurrency gate).
    service_time: float = 0.0


__all__ = [
    "PoolOptions",
    "ResponseTooLarge",
    "CertificateInvalid",
    "ConnectFailed",
    "Headers",
    "HttpError",
    "Response",
    "ResponseLost",
    "Timeout",
]
