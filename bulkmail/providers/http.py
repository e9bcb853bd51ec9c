"""A lean HTTP/1.1 client for one origin: keep-alive pool, one request at a time per connection.

Why not aiohttp: its ClientSession costs ~100 µs of CPU per request on a 2-core box, about
40 % of bulkmail's whole per-recipient cost. Here one :class:`asyncio.Protocol` per
connection parses answers with ``httptools`` (llhttp) and the request goes out as one
``transport.write`` of bytes built once.

The exception tree, and what each failure maps to::

    HttpError
    ├── ConnectFailed(ConnectionError)   nothing was written: safe to retry
    │   │ refused, DNS, TLS handshake, connect timed out, or a fresh
    │   │ connection found closed before the request was written
    │   └── CertificateInvalid           the certificate or host name did not verify:
    │         nothing was written, and no retry can succeed (a campaign-wide stop)
    ├── ResponseLost(ConnectionError)    the request was (maybe partly) written and no complete
    │     answer came: reset, EOF, malformed or unsupported answer (incl. 101), on a
    │     fresh or a kept-alive connection alike
    │   └── ResponseTooLarge             the answer's headers or body passed the cap
    └── Timeout(TimeoutError)            written, no complete answer before the deadline

The keep-alive race: a server may close an idle connection just as we reuse it. An idle
connection that the loop has already seen closed is never reused, and one found closing
*before* the write is silently swapped for another (provably nothing was sent). Once
``transport.write`` has been called we cannot prove the server did not read the request, so
any failure after that, on a reused connection too, is :class:`ResponseLost` (ambiguous).
Keep ``idle_timeout`` below the server's keep-alive timeout to make the race rare: the
default, 4 s, is under the 5 s many servers use. ``max_lifetime`` (60 s) retires even a busy
connection, so a DNS change is seen within a minute. See :class:`PoolOptions`.

The ``timeout`` clock starts once a connection slot is held; it covers connect, write and
the full answer. Waiting for a slot is not timed: each holder is bounded by its own timeout.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable, Sequence
from types import TracebackType
from urllib.parse import urlsplit

from bulkmail.providers._http_conn import _Conn
from bulkmail.providers._http_types import (
    CertificateInvalid,
    ConnectFailed,
    Headers,
    HttpError,
    PoolOptions,
    Response,
    ResponseLost,
    ResponseTooLarge,
    Timeout,
)

_DEFAULTS = PoolOptions()

#: Requests corked at most before they are written (see ``HttpPool._cork``). A turn of the loop
#: that starts many (a paced run catching up after a stall: 130 in one turn at 5,000/s) wrote
#: the first ~20 ms after the limiter released it, bunching arrivals past the pacing's jitter
#: margin (46-49 throttles in such runs); 16 requests are ~1-2 ms of work.
_CORK_MOST = 16

_FORBIDDEN = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one origin, at most ``max_connections`` of them.

    >>> async def main() -> None:                                      # doctest: +SKIP
    ...     async with HttpPool("https://email.us-east-1.amazonaws.com") as pool:
    ...         response = await pool.request(
    ...             "POST", "/v2/email/outbound-emails",
    ...             [("Content-Type", "application/json")], b'{"...": 1}')
    ...         print(response.status, response.headers.get("x-amzn-RequestId"))

    ``Host`` (:attr:`host_header`, the value to sign) and ``Content-Length`` are added; do not
    pass them. Paths are relative to the URL's path. Idle connections are reused newest
    first; those idle longer than ``idle_timeout``, or open longer than ``max_lifetime``, are
    closed. Requests beyond ``max_connections`` wait in FIFO order. An answer whose headers
    pass ``max_header_bytes`` or whose body passes ``max_body_bytes`` raises
    :class:`ResponseTooLarge` and its connection is dropped. ``clock`` (default: the loop's)
    is what idle and lifetime are measured on.
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 256,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = _DEFAULTS.idle_timeout,
        max_lifetime: float = _DEFAULTS.max_lifetime,
        max_header_bytes: int = _DEFAULTS.max_header_bytes,
        max_body_bytes: int = _DEFAULTS.max_body_bytes,
        clock: Callable[[], float] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port][/base], got {url!r}")
        if parts.query or parts.fragment or parts.username is not None:
            raise ValueError(f"url must not carry a query, fragment or user: {url!r}")
        if min(max_connections, timeout, idle_timeout, max_lifetime) <= 0:
            raise ValueError("max_connections, timeout, idle_timeout, max_lifetime: must be > 0")
        if min(max_header_bytes, max_body_bytes) < 1024:
            raise ValueError("max_header_bytes and max_body_bytes must be at least 1024")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self.host_header: str = parts.netloc
        self._base = parts.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._max = max_connections
        self._timeout = timeout
        self._idle_timeout = idle_timeout
        self._max_lifetime = max_lifetime
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._idle: list[_Conn] = []  # oldest first; reuse pops the newest
        self._conns: set[_Conn] = set()
        self._count = 0  # slots held: open or opening connections
        self._waiters: collections.deque[asyncio.Future[_Conn | None]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self._corked: list[_Conn] = []
        self._prefix = f" {self._base}".encode("ascii")
        self._host_line = f" HTTP/1.1\r\nHost: {self.host_header}\r\nContent-Length: "

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def request(
        self, method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Response:
        """Send one request and read the whole answer; raises only :class:`HttpError`."""
        if self._closed:
            raise RuntimeError("HttpPool is closed")
        data = self._encode(method, path, headers, body)
        loop = asyncio.get_running_loop()
        conn = self._pop_idle(loop)
        if conn is None:
            conn = await self._acquire(loop)
        deadline = loop.time() + self._timeout
        if conn is None:
            conn = await self._connect(loop, deadline)
        try:
            response = await conn.start(data, deadline)
        except BaseException:
            conn.abort()
            self._drop_slot()
            raise
        if conn.keep_alive and not (conn.closed or self._closed or self._retired(conn, loop)):
            self._release(conn, loop)
        else:
            conn.close()
            self._drop_slot()
        return response

    async def close(self) -> None:
        """Close every connection (requests still in flight fail) and refuse new requests."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("HttpPool is closed"))
        self._idle.clear()
        conns = list(self._conns)
        for conn in conns:
            conn.idle = False
            conn.close()
        if conns:
            await asyncio.wait([conn.lost for conn in conns], timeout=2.0)
            for conn in conns:
                if not conn.lost.done():
                    conn.abort()

    # -- internals ----------------------------------------------------------------------

    def _encode(
        self, method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> bytes:
        lines = "".join([f"{name}: {value}\r\n" for name, value in headers])
        if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
            raise ValueError("header names and values must not contain CR or LF")
        if " " in path or "\n" in path or "\r" in path or not path.startswith("/"):
            raise ValueError(f"path must start with '/' and hold no spaces: {path!r}")
        if not _FORBIDDEN.isdisjoint([name.lower() for name, _ in headers]):
            raise ValueError("Host, Content-Length, Transfer-Encoding, Connection: set by HttpPool")
        head = f"{self._host_line}{len(body)}\r\n{lines}\r\n"
        return b"".join(
            (method.encode("ascii"), self._prefix, path.encode("ascii"), head.encode(), body)
        )

    def _cork(self, conn: _Conn) -> None:
        """Write ``conn``'s request with the others started in this turn of the loop, at its
        end (or at once, once ``_CORK_MOST`` wait): one burst of writes wakes the server once
        for all of them, where a write on each start woke it for each (loopback: the write
        does the server's receiving too).
        """
        corked = self._corked
        corked.append(conn)
        if len(corked) == 1:
            conn.loop.call_soon(self._uncork)
        elif len(corked) >= _CORK_MOST:
            self._uncork()

    def _uncork(self) -> None:
        corked, self._corked = self._corked, []  # (the call_soon'ed one may find it empty)
        for conn in corked:
            conn.flush()

    def _now(self, loop: asyncio.AbstractEventLoop) -> float:
        # The loop at hand, not asyncio.get_running_loop(): that costs a getpid() each time
        # in CPython's C code, and this ran three times a request.
        return self._clock() if self._clock is not None else loop.time()

    def _retired(self, conn: _Conn, loop: asyncio.AbstractEventLoop) -> bool:
        """Open longer than ``max_lifetime``: closed instead of kept (DNS changes are seen)."""
        return self._now(loop) - conn.born >= self._max_lifetime

    def _pop_idle(self, loop: asyncio.AbstractEventLoop) -> _Conn | None:
        idle = self._idle
        now = self._now(loop)
        while idle:
            conn = idle.pop()
            conn.idle = False
            if (
                conn.usable()
                and now - conn.idle_since < self._idle_timeout
                and now - conn.born < self._max_lifetime
            ):
                return conn
            conn.close()
            self._drop_slot()
        return None

    async def _acquire(self, loop: asyncio.AbstractEventLoop) -> _Conn | None:
        """A live connection, or ``None`` when the caller holds a slot and must connect."""
        if self._count < self._max:
            self._count += 1
            return None
        waiter: asyncio.Future[_Conn | None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            conn = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # woken and cancelled at once: pass it on
                if handed is None:
                    self._drop_slot()
                else:
                    self._release(handed, loop)
            raise
        if conn is not None and not conn.usable():
            conn.abort()
            return None  # died while handed over: its slot is ours
        return conn

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Conn:
        try:
            async with asyncio.timeout_at(deadline):
                if self._ssl is None:
                    _, conn = await loop.create_connection(
                        lambda: _Conn(self, loop), self._host, self._port
                    )
                else:
                    _, conn = await loop.create_connection(
                        lambda: _Conn(self, loop),
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host,
                    )
        except BaseException as exc:
            self._drop_slot()
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise CertificateInvalid(self.host_header, exc) from exc
            if isinstance(exc, TimeoutError):
                raise ConnectFailed(f"connect to {self.host_header} timed out") from exc
            if isinstance(exc, OSError):  # refused, DNS, TLS (ssl.SSLError is an OSError)
                raise ConnectFailed(f"cannot connect to {self.host_header}: {exc}") from exc
            raise
        if not conn.usable():  # closed before we wrote a byte
            conn.abort()
            self._drop_slot()
            raise ConnectFailed(f"{self.host_header} closed the connection at once")
        conn.born = self._now(loop)
        self._conns.add(conn)
        conn.lost.add_done_callback(lambda _: self._conns.discard(conn))
        return conn

    def _release(self, conn: _Conn, loop: asyncio.AbstractEventLoop) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle = True
        conn.idle_since = self._now(loop)
        self._idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._idle_timeout, self._sweep)

    def _drop_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the oldest waiter
                return
        self._count -= 1

    def _forget_idle(self, conn: _Conn) -> None:
        """An idle connection was closed (by the server or by us): free its slot."""
        conn.idle = False
        try:
            self._idle.remove(conn)
        except ValueError:
            return
        self._drop_slot()

    def _sweep(self) -> None:
        self._sweeper = None
        idle = self._idle
        if not idle:
            return
        loop = idle[0].loop
        expiry = self._now(loop) - self._idle_timeout
        while idle and idle[0].idle_since <= expiry:
            conn = idle.pop(0)
            conn.idle = False
            conn.close()
            self._drop_slot()
        if idle:
            wait = max(0.01, idle[0].idle_since + self._idle_timeout - self._now(loop))
            self._sweeper = loop.call_later(wait, self._sweep)


__all__ = [
    "CertificateInvalid",
    "ConnectFailed",
    "Headers",
    "HttpError",
    "HttpPool",
    "PoolOptions",
    "Response",
    "ResponseLost",
    "ResponseTooLarge",
    "Timeout",
]
