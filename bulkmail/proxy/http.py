"""A small HTTP/1.1 server for programs we do not trust: every limit explicit.

The proxy faces other programs, maybe a network, so this layer (asyncio streams, no
framework) decides before a handler sees anything: the head must arrive within
``header_timeout`` and fit ``max_head`` bytes, a body must be declared by ``Content-Length``
(no chunked uploads: the SES SDKs never send one) and fit the handler's limit for that path —
refused with 413 *before* a byte of it is read — and arrive within ``body_timeout``; at most
``max_connections`` are open at once (more are closed at once) and at most ``body_budget``
bytes of bodies are buffered. Every refusal is one log line, never a traceback and never a
header value (an ``Authorization`` header is a credential).

>>> limits = Limits(header_timeout=5.0, max_connections=100)
>>> limits.max_head
16384
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from multidict import CIMultiDict

from bulkmail.servers._ses import too_large
from bulkmail.servers._wire import ApiError, Reply

log = logging.getLogger("bulkmail.proxy")

_METHOD = re.compile(rb"[A-Z]{1,16}")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REASONS = {
    200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
    411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable",
}  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """What any one client may cost the server."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    idle_timeout: float = 60.0
    max_head: int = 16384
    max_connections: int = 1024
    body_budget: int = 256 << 20


@dataclass(slots=True)
class Request:
    """One request as received: ``path`` and ``query`` still percent-encoded."""

    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    body: bytes
    peer: str


class Handler(Protocol):
    """What the server calls; errors it builds are in the API's own shape."""

    def body_limit(self, method: str, path: str) -> int: ...
    def error(self, path: str, error: ApiError) -> Reply: ...
    def handle(self, request: Request) -> Awaitable[Reply]: ...


class _Refused(Exception):
    """A request refused before the handler: answer ``reply`` (if any), log, close."""

    def __init__(self, why: str, reply: Reply | None = None) -> None:
        super().__init__(why)
        self.reply = reply


def _plain(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), "text/plain")


class HttpServer:
    """Serve ``handler`` on ``host:port`` (TLS with ``ssl_context``).

    >>> async def main(handler: Handler) -> None:                     # doctest: +SKIP
    ...     server = HttpServer(handler, Limits())
    ...     await server.start("127.0.0.1", 0)
    ...     print(server.port)
    ...     await server.stop()
    """

    def __init__(self, handler: Handler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.open_connections = 0
        self.refused = 0
        self._buffered = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(
            self._connection,
            host,
            port,
            limit=self.limits.max_head + 2,
            ssl=ssl_context,
            ssl_handshake_timeout=self.limits.header_timeout if ssl_context else None,
            backlog=512,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await server.wait_closed()

    # -- one connection ----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else "?"
        if self.open_connections >= self.limits.max_connections:
            self.refused += 1
            if self.refused % 100 == 1:  # a flood: one line per hundred, not one each
                log.warning("%s: connection refused: %d open (limit)", peer, self.open_connections)
            writer.transport.abort()
            return
        self.open_connections += 1
        self._writers.add(writer)
        try:
            first = True
            while True:
                keep = await self._one(reader, writer, peer, first)
                first = False
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass  # the client went away: nothing to answer, nothing worth a line
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.close()  # not abort(): an answer still in the buffer must reach the client
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, first: bool
    ) -> bool:
        limits = self.limits
        try:
            async with asyncio.timeout(limits.header_timeout if first else limits.idle_timeout):
                start = await reader.read(1)
        except TimeoutError:
            if first:
                log.warning("%s: no request within %.0f s; closed", peer, limits.header_timeout)
            return False
        if not start:
            return False
        path = "?"
        try:
            try:
                async with asyncio.timeout(limits.header_timeout):  # no task per request
                    head = start + await reader.readuntil(b"\r\n\r\n")
            except TimeoutError:
                raise _Refused(
                    f"request head not complete within {limits.header_timeout:g} s"
                ) from None
            except (asyncio.LimitOverrunError, ValueError):
                raise _Refused(
                    f"request head over {limits.max_head} bytes",
                    _plain(431, "Request header fields too large"),
                ) from None
            method, path, query, version, headers = _parse_head(head)
            keep = version == "HTTP/1.1" and "close" not in headers.get("Connection", "").lower()
            length = _content_length(headers)
            limit = self.handler.body_limit(method, path)
            if length > limit:
                raise _Refused(
                    f"declared body of {length} bytes over the limit of {limit}",
                    self.handler.error(path, too_large(length, limit, v2=path.startswith("/v2/"))),
                )
            if self._buffered + length > limits.body_budget:
                raise _Refused(
                    "body budget in use",
                    self.handler.error(
                        path, ApiError(503, "ServiceUnavailable", "Service Unavailable")
                    ),
                )
            self._buffered += length
            try:
                if headers.get("Expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    body = b""
                    if length:
                        async with asyncio.timeout(limits.body_timeout):
                            body = await reader.readexactly(length)
                except TimeoutError:
                    raise _Refused(f"body not complete within {limits.body_timeout:g} s") from None
                request = Request(method, path, query, headers, body, peer)
                reply = await self._handle(request)
            finally:
                self._buffered -= length
        except _Refused as refused:
            log.warning("%s: %s %s", peer, _loggable(path), refused)
            if refused.reply is not None:
                await _write(writer, refused.reply, keep=False)
            return False
        await _write(writer, reply, keep=keep)
        return keep

    async def _handle(self, request: Request) -> Reply:
        try:
            return await self.handler.handle(request)
        except Exception as exc:  # a bug of ours: one line, SES's InternalFailure, go on
            log.error(
                "%s: %s %s: internal error %s: %s",
                request.peer,
                request.method,
                _loggable(request.path),
                type(exc).__name__,
                str(exc)[:200],
            )
            return self.handler.error(
                request.path,
                ApiError(
                    500,
                    "InternalFailure",
                    "The request processing has failed because of an unknown error, "
                    "exception or failure.",
                ),
            )


def _loggable(path: str) -> str:
    """A path fit for a log line: printable, short, no query (it may carry a credential)."""
    return repr(path[:100])


def _parse_head(head: bytes) -> tuple[str, str, str, str, CIMultiDict[str]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if (
        len(parts) != 3
        or not _METHOD.fullmatch(parts[0])
        or not _TARGET.fullmatch(parts[1])
        or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0")
    ):
        raise _Refused(
            f"malformed request line ({len(lines[0])} bytes)", _plain(400, "Bad request line")
        )
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise _Refused("malformed header line", _plain(400, "Bad header line"))
        headers.add(name, value.strip(" \t"))
    target = parts[1].decode("ascii")
    path, _, query = target.partition("?")
    return parts[0].decode("ascii"), path, query, parts[2].decode("ascii"), headers


def _content_length(headers: CIMultiDict[str]) -> int:
    if "Transfer-Encoding" in headers:
        raise _Refused("Transfer-Encoding is not accepted", _plain(411, "Content-Length required"))
    values = set(headers.getall("Content-Length", []))
    if not values:
        return 0
    value = values.pop()
    if values or not value.isascii() or not value.isdigit() or len(value) > 18:
        raise _Refused("malformed Content-Length", _plain(400, "Bad Content-Length"))
    return int(value)


async def _write(writer: asyncio.StreamWriter, reply: Reply, *, keep: bool) -> None:
    head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Error')}"]
    head.append(f"Content-Type: {reply.content_type}")
    head.append(f"Content-Length: {len(reply.body)}")
    head.extend(f"{name}: {value}" for name, value in reply.headers.items())
    if not keep:
        head.append("Connection: close")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
    await writer.drain()


Serve = Callable[[Request], Awaitable[Reply]]

__all__ = ["Handler", "HttpServer", "Limits", "Request"]
