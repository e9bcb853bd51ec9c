"""One keep-alive HTTP/1.1 connection of :class:`~bulkmail.providers.http.HttpPool`.

An :class:`asyncio.Protocol` that carries at most one exchange at a time: the pool writes
the request bytes with :meth:`_Conn.start`, ``httptools`` (llhttp) parses the answer through
the callbacks below, and the exchange's future gets a :class:`Response` or an
:class:`HttpError`. The connection reports its own loss back to the pool.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import httptools

from bulkmail.providers._http_types import (
    Headers,
    HttpError,
    Response,
    ResponseLost,
    ResponseTooLarge,
    Timeout,
)

if TYPE_CHECKING:
    from bulkmail.providers.http import HttpPool


class _Conn(asyncio.Protocol):
    """One connection: at most one exchange in flight, parsed by llhttp."""

    __slots__ = (
        "pool",
        "loop",
        "transport",
        "parser",
        "fut",
        "timer",
        "headers",
        "header_bytes",
        "body",
        "body_bytes",
        "born",
        "headers_done",
        "keep_alive",
        "idle",
        "idle_since",
        "closed",
        "lost",
        "written_at",
        "outgoing",
        "deadline",
        "timer_at",
    )

    def __init__(self, pool: HttpPool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.fut: asyncio.Future[Response] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.born = 0.0  # when the pool got it, on the pool's clock
        self.headers_done = False
        self.keep_alive = False
        self.idle = False  # in the pool's idle list (the pool, not a request, owns it)
        self.idle_since = 0.0
        self.closed = False
        self.lost: asyncio.Future[None] = loop.create_future()
        self.written_at = 0.0
        self.outgoing = b""  # the request, until the pool writes it (see HttpPool._cork)
        self.deadline = 0.0  # of the exchange in flight, on the loop's clock
        self.timer_at = 0.0  # when self.timer fires

    # -- driven by HttpPool -------------------------------------------------------------

    def start(self, data: bytes, deadline: float) -> asyncio.Future[Response]:
        fut: asyncio.Future[Response] = self.loop.create_future()
        self.fut = fut
        self.headers = {}
        self.header_bytes = 0
        self.body = []
        self.body_bytes = 0
        self.headers_done = False
        self.keep_alive = False
        if self.parser is None:
            self.parser = httptools.HttpResponseParser(self)
        # One timer per connection, not per exchange: it stays set when an answer comes, and
        # when it fires it looks at the exchange then in flight (if any) and sets itself again
        # for that one's deadline. An exchange cost a timer made and cancelled (4-7 µs on
        # uvloop); now one in ``timeout`` seconds does.
        self.deadline = deadline
        if self.timer is None or deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self.timer_at = deadline
        self.outgoing = data
        self.pool._cork(self)
        return fut

    def flush(self) -> None:
        """Write the request given to :meth:`start` (the pool calls this, see ``_cork``)."""
        data, self.outgoing = self.outgoing, b""
        if self.fut is None or self.closed or self.transport is None:
            return  # failed or timed out meanwhile: nothing to write
        self.written_at = time.perf_counter()  # the loop's clock is in whole ms on uvloop
        self.transport.write(data)

    def usable(self) -> bool:
        """Open as far as we can tell without writing (nothing seen closing it)."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: HttpError) -> None:
        fut = self.fut
        self.fut = None
        self._stop_timer()
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        self.abort()

    def _finish(self, status: int) -> None:
        fut = self.fut
        self.fut = None
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        # The answer owns its dict; the next exchange starts a new one.
        headers, self.headers = self.headers, {}
        if fut is not None and not fut.done():
            elapsed = time.perf_counter() - self.written_at
            fut.set_result(Response(status, Headers(headers), body, elapsed))

    def _on_timer(self) -> None:
        self.timer = None
        if self.fut is None or self.closed:
            return  # idle (the answer came) or gone: nothing to time
        if self.deadline > self.loop.time() + 0.001:  # a later exchange: wait for its deadline
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            self.timer_at = self.deadline
            return
        self._fail(Timeout("no complete answer in time"))

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.fut is None:  # nothing asked: a confused server; never reuse this one
            self.abort()
            return
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - llhttp errors, 101 upgrade, our callbacks
            self._fail(ResponseLost(f"malformed answer: {exc!r}"))

    def eof_received(self) -> bool | None:
        self.closed = True  # never reuse; connection_lost (soon) settles any exchange
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        if self.fut is not None:
            if exc is None and self.headers_done and self._close_delimited():
                self.keep_alive = False
                self._finish(self.parser.get_status_code())  # type: ignore[union-attr]
            else:
                reason = f": {exc!r}" if exc is not None else ""
                self._fail(ResponseLost(f"connection closed{reason}"))
        if self.idle:
            self.pool._forget_idle(self)
        if not self.lost.done():
            self.lost.set_result(None)

    def _close_delimited(self) -> bool:
        return (
            "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "").lower()
        )

    # -- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.pool.max_header_bytes:
            if self.fut is not None:
                limit = self.pool.max_header_bytes
                self._fail(ResponseTooLarge(f"answer headers over {limit} bytes"))
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self.headers
        headers[key] = headers[key] + ", " + text if key in headers else text

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.pool.max_body_bytes:
            if self.fut is not None:
                limit = self.pool.max_body_bytes
                self._fail(ResponseTooLarge(f"answer body over {limit} bytes"))
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        if parser is None or self.fut is None:
            return
        status: int = parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: wait for more
            self.headers = {}
            self.header_bytes = 0
            self.body = []
            self.headers_done = False
            return
        self.keep_alive = parser.should_keep_alive()
        self._finish(status)
