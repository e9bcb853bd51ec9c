"""HttpPool against real peers on 127.0.0.1 port 0: aiohttp.web (plain and TLS) and raw
asyncio servers that misbehave on purpose. The tests run on asyncio's loop; the last one
repeats the main paths on uvloop, the loop bulkmail runs on.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme
import uvloop
from aiohttp import web

from bulkmail.providers.http import (
    ConnectFailed,
    HttpPool,
    PoolOptions,
    ResponseLost,
    ResponseTooLarge,
    Timeout,
)
from tests.conftest import free_port

HANDLER_TIMEOUT = 5.0


# -- aiohttp.web peer ----------------------------------------------------------------------


@dataclass
class WebPeer:
    url: str
    ports: list[int] = field(default_factory=list)  # client port of every request
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    active: int = 0
    peak: int = 0

    @property
    def connections(self) -> int:
        return len(set(self.ports))


def _web_app(peer: WebPeer) -> web.Application:
    async def record(request: web.Request) -> bytes:
        peername = request.transport.get_extra_info("peername") if request.transport else None
        peer.ports.append(peername[1] if peername else -1)
        body = await request.read()
        peer.requests.append((request.method, dict(request.headers), body))
        return body

    async def echo(request: web.Request) -> web.Response:
        body = await record(request)
        status = int(request.query.get("status", "200"))
        return web.Response(status=status, body=body, headers={"X-Amzn-RequestId": "req-1"})

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        peer.active += 1
        peer.peak = max(peer.peak, peer.active)
        await asyncio.sleep(0.02)
        peer.active -= 1
        return web.Response(body=b"ok")

    async def chunked(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"hello, ", b"chunked ", b"world"):
            await response.write(part)
        await response.write_eof()
        return response

    async def close(request: web.Request) -> web.Response:
        await record(request)
        response = web.Response(body=b"bye")
        response.force_close()
        return response

    async def no_content(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/base/echo", echo)
    app.router.add_get("/base/slow", slow)
    app.router.add_get("/base/chunked", chunked)
    app.router.add_get("/base/close", close)
    app.router.add_get("/base/empty", no_content)
    return app


async def _start_web(tls: ssl.SSLContext | None) -> tuple[web.AppRunner, WebPeer]:
    peer = WebPeer(url="")
    runner = web.AppRunner(_web_app(peer), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    peer.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/base"
    return runner, peer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
async def web_peer() -> AsyncIterator[WebPeer]:
    runner, peer = await _start_web(None)
    yield peer
    await runner.cleanup()


@pytest.fixture
async def tls_peer(ca: trustme.CA) -> AsyncIterator[WebPeer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    runner, peer = await _start_web(context)
    yield peer
    await runner.cleanup()


# -- raw asyncio peer ----------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawPeer:
    """An asyncio server whose per-connection behaviour is one coroutine (n = connection no.)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> RawPeer:
        self.server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await asyncio.wait_for(self.handler(reader, writer, self.connections), HANDLER_TIMEOUT)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass
            self.tasks.discard(task)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request(reader)
        writer.write(OK)


# -- aiohttp.web peer: the happy paths ----------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_round_trip(
    tls: bool, web_peer: WebPeer, tls_peer: WebPeer, client_tls: ssl.SSLContext
) -> None:
    peer = tls_peer if tls else web_peer
    async with HttpPool(peer.url, ssl_context=client_tls if tls else None) as pool:
        response = await pool.request(
            "POST",
            "/echo?status=201",
            [("Content-Type", "application/json"), ("X-A", "1")],
            b'{"hello": "world"}',
        )
    assert response.status == 201
    assert response.body == b'{"hello": "world"}'
    assert response.headers.get("x-amzn-requestid") == "req-1"
    assert response.headers["X-AMZN-REQUESTID"] == "req-1"
    assert "Content-Length" in response.headers
    assert dict(response.headers)["content-length"] == "18"
    method, headers, body = peer.requests[0]
    assert (method, body) == ("POST", b'{"hello": "world"}')
    assert headers["Host"] == pool.host_header == peer.url.split("/")[2]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-A"] == "1"
    assert headers["Content-Length"] == "18"


async def test_tls_is_verified_by_default(tls_peer: WebPeer) -> None:
    async with HttpPool(tls_peer.url) as pool:
        with pytest.raises(ConnectFailed) as caught:
            await pool.request("GET", "/echo", [], b"")
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_keep_alive_reuses_one_connection(
    tls: bool, web_peer: WebPeer, tls_peer: WebPeer, client_tls: ssl.SSLContext
) -> None:
    peer = tls_peer if tls else web_peer
    async with HttpPool(peer.url, ssl_context=client_tls if tls else None) as pool:
        for i in range(200):
            response = await pool.request("POST", "/echo", [], b"%d" % i)
            assert response.body == b"%d" % i
    assert len(peer.ports) == 200
    assert peer.connections == 1


async def test_concurrency_is_bounded_by_max_connections(web_peer: WebPeer) -> None:
    async with HttpPool(web_peer.url, max_connections=4) as pool:
        responses = await asyncio.gather(
            *(pool.request("GET", "/slow", [], b"") for _ in range(40))
        )
    assert [r.body for r in responses] == [b"ok"] * 40
    assert web_peer.peak == 4
    assert web_peer.connections == 4


async def test_chunked_response(web_peer: WebPeer) -> None:
    async with HttpPool(web_peer.url) as pool:
        response = await pool.request("GET", "/chunked", [], b"")
        assert response.body == b"hello, chunked world"
        assert response.headers["transfer-encoding"] == "chunked"
        await pool.request("GET", "/echo", [], b"")
    assert web_peer.connections == 1


async def test_connection_close_answer_is_not_reused(web_peer: WebPeer) -> None:
    async with HttpPool(web_peer.url) as pool:
        first = await pool.request("GET", "/close", [], b"")
        second = await pool.request("POST", "/echo", [], b"again")
    assert (first.body, second.body) == (b"bye", b"again")
    assert web_peer.connections == 2


async def test_no_body_answers_keep_the_connection(web_peer: WebPeer) -> None:
    async with HttpPool(web_peer.url) as pool:
        empty = await pool.request("GET", "/empty", [], b"")
        after = await pool.request("POST", "/echo", [], b"still here")
    assert (empty.status, empty.body) == (204, b"")
    assert after.body == b"still here"
    assert web_peer.connections == 1


async def test_idle_timeout_closes_old_connections(web_peer: WebPeer) -> None:
    async with HttpPool(web_peer.url, idle_timeout=0.05) as pool:
        await pool.request("GET", "/echo", [], b"")
        await asyncio.sleep(0.15)
        await pool.request("GET", "/echo", [], b"")
    assert web_peer.connections == 2


async def test_bad_arguments_are_refused(web_peer: WebPeer) -> None:
    with pytest.raises(ValueError):
        HttpPool("ftp://example.com")
    async with HttpPool(web_peer.url) as pool:
        with pytest.raises(ValueError, match="CR or LF"):
            await pool.request("GET", "/echo", [("X-A", "1\r\nX-Evil: 1")], b"")
        with pytest.raises(ValueError, match="set by HttpPool"):
            await pool.request("GET", "/echo", [("host", "elsewhere")], b"")
        with pytest.raises(ValueError, match="path"):
            await pool.request("GET", "/a b", [], b"")
    with pytest.raises(RuntimeError):
        await pool.request("GET", "/echo", [], b"")
    assert web_peer.requests == []


# -- raw asyncio peers: answers llhttp must get right ------------------------------------


async def test_continue_then_answer() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 4\r\n\r\n")
        await w.drain()
        w.write(b"done")
        await keep_answering(r, w)

    async with RawPeer(handler) as peer, HttpPool(peer.url) as pool:
        response = await pool.request("POST", "/", [], b"x")
        assert (response.status, response.body) == (202, b"done")
        assert (await pool.request("POST", "/", [], b"x")).body == b"ok"
    assert peer.connections == 1


async def test_close_delimited_body() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await w.drain()
        await asyncio.sleep(0.01)
        w.write(b"the end")

    async with RawPeer(handler) as peer, HttpPool(peer.url) as pool:
        response = await pool.request("GET", "/", [], b"")
        assert response.body == b"until the end"
        assert (await pool.request("GET", "/", [], b"")).body == b"until the end"
    assert peer.connections == 2


async def test_truncated_body_is_lost() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")

    async with RawPeer(handler) as peer, HttpPool(peer.url) as pool:
        with pytest.raises(ResponseLost):
            await pool.request("GET", "/", [], b"")


# -- raw asyncio peers: failures -----------------------------------------------------------


async def test_closed_before_answering_is_response_lost() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)

    async with RawPeer(handler) as peer, HttpPool(peer.url) as pool:
        with pytest.raises(ResponseLost):
            await pool.request("POST", "/", [], b"payload")


async def test_closed_without_reading_is_response_lost() -> None:
    # Documented: once the request was handed to the transport we cannot prove the server did
    # not read it, so this is ResponseLost (ambiguous), not ConnectFailed.
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await asyncio.sleep(0.05)

    async with RawPeer(handler) as peer, HttpPool(peer.url) as pool:
        with pytest.raises(ResponseLost):
            await pool.request("POST", "/", [], b"payload")


async def test_reused_connection_dying_mid_request_is_response_lost() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(OK)
        await read_request(r)  # then close without answering

    async with RawPeer(handler) as peer, HttpPool(peer.url) as pool:
        await pool.request("POST", "/", [], b"one")
        with pytest.raises(ResponseLost):
            await pool.request("POST", "/", [], b"two")
        assert (await pool.request("POST", "/", [], b"three")).body == b"ok"
    assert peer.connections == 2


def test_each_exchange_on_a_connection_is_timed_from_its_own_start() -> None:
    """One timer per connection, reset by nothing: the second exchange on a kept-alive
    connection runs past the first one's deadline and is answered (not timed out by the
    first's timer); a third that is never answered times out. On uvloop, bulkmail's loop."""
    delays = [0.0, 0.6, 60.0]  # second: answered after the first's deadline, within its own

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while delays:
            await read_request(r)
            await asyncio.sleep(delays.pop(0))
            w.write(OK)

    async def scenario() -> None:
        async with RawPeer(handler) as peer, HttpPool(peer.url, timeout=1.0) as pool:
            assert (await pool.request("GET", "/", [], b"")).body == b"ok"
            await asyncio.sleep(0.6)
            assert (await pool.request("GET", "/", [], b"")).body == b"ok"
            with pytest.raises(Timeout):
                await pool.request("GET", "/", [], b"")
            assert peer.connections == 1

    uvloop.run(scenario())


async def test_slow_answer_times_out_and_connection_is_discarded() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        if n == 1:
            await asyncio.sleep(1.0)
        w.write(OK)
        await keep_answering(r, w)

    # 0.5 s, not less: the deadline covers the connect too, and on a loaded 2-core box a
    # loopback connect once took over 0.1 s (ConnectFailed instead of Timeout).
    async with RawPeer(handler) as peer, HttpPool(peer.url, timeout=0.5) as pool:
        with pytest.raises(Timeout):
            await pool.request("GET", "/", [], b"")
        assert (await pool.request("GET", "/", [], b"")).body == b"ok"
        assert (await pool.request("GET", "/", [], b"")).body == b"ok"
    assert peer.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    ],
    ids=["status", "garbage", "length"],
)
async def test_malformed_answer_is_response_lost(answer: bytes) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(answer)
        await asyncio.sleep(0.5)

    async with RawPeer(handler) as peer, HttpPool(peer.url) as pool:
        with pytest.raises(ResponseLost, match="malformed"):
            await pool.request("GET", "/", [], b"")


async def test_connection_refused_is_connect_failed() -> None:
    async with HttpPool(f"http://127.0.0.1:{free_port()}") as pool:
        with pytest.raises(ConnectFailed) as caught:
            await pool.request("POST", "/", [], b"payload")
    assert isinstance(caught.value, ConnectionError)
    assert not isinstance(caught.value, TimeoutError)


async def test_server_closing_an_idle_connection_is_noticed() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(OK)  # keep-alive promised, then the server's idle timeout strikes
        await w.drain()
        await asyncio.sleep(0.02)

    async with RawPeer(handler) as peer, HttpPool(peer.url) as pool:
        await pool.request("GET", "/", [], b"")
        await asyncio.sleep(0.1)
        assert (await pool.request("GET", "/", [], b"")).body == b"ok"
    assert peer.connections == 2


async def test_cancelled_request_frees_its_slot() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        if n == 1:
            await asyncio.sleep(1.0)
        w.write(OK)
        await keep_answering(r, w)

    async with RawPeer(handler) as peer, HttpPool(peer.url, max_connections=1) as pool:
        stuck = asyncio.ensure_future(pool.request("GET", "/", [], b""))
        queued = asyncio.ensure_future(pool.request("GET", "/", [], b""))
        await asyncio.sleep(0.05)
        stuck.cancel()
        assert (await queued).body == b"ok"
        with pytest.raises(asyncio.CancelledError):
            await stuck
    assert peer.connections == 2


def test_main_paths_on_uvloop(ca: trustme.CA) -> None:
    async def stall_first(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        if n == 1:
            await asyncio.sleep(1.0)
        w.write(OK)
        await asyncio.sleep(0.02)  # then close the idle connection

    async def scenario() -> None:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_tls)
        client_tls = ssl.create_default_context()
        ca.configure_trust(client_tls)
        runner, peer = await _start_web(server_tls)
        try:
            async with HttpPool(peer.url, ssl_context=client_tls, max_connections=2) as pool:
                for i in range(50):
                    assert (await pool.request("POST", "/echo", [], b"%d" % i)).body == b"%d" % i
                assert (await pool.request("GET", "/chunked", [], b"")).body.endswith(b"world")
                await asyncio.gather(*(pool.request("GET", "/slow", [], b"") for _ in range(10)))
            assert peer.peak == 2 and peer.connections == 2
        finally:
            await runner.cleanup()
        async with RawPeer(stall_first) as raw, HttpPool(raw.url, timeout=0.5) as pool:
            with pytest.raises(Timeout):
                await pool.request("GET", "/", [], b"")
            assert (await pool.request("GET", "/", [], b"")).body == b"ok"
            await asyncio.sleep(0.1)
            assert (await pool.request("GET", "/", [], b"")).body == b"ok"
        assert raw.connections == 3
        async with HttpPool(f"http://127.0.0.1:{free_port()}") as pool:
            with pytest.raises(ConnectFailed):
                await pool.request("GET", "/", [], b"")

    uvloop.run(scenario())


# -- pool hygiene: idle and lifetime on an injected clock, size caps, answers own their data


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_default_idle_timeout_is_below_common_keep_alive_timeouts(web_peer: WebPeer) -> None:
    clock = Clock()
    async with HttpPool(web_peer.url, clock=clock) as pool:
        await pool.request("GET", "/echo", [], b"")
        clock.now += 3.0
        await pool.request("GET", "/echo", [], b"")  # reused: idle 3 s
        assert web_peer.connections == 1
        clock.now += 5.0  # a server with a 5 s keep-alive may be closing it now: never reuse
        await pool.request("GET", "/echo", [], b"")
    assert web_peer.connections == 2


async def test_max_lifetime_retires_a_busy_connection(web_peer: WebPeer) -> None:
    clock = Clock()
    async with HttpPool(web_peer.url, clock=clock, idle_timeout=20, max_lifetime=60) as pool:
        for _ in range(10):  # busy: never idle more than 1 s, but 90 s old by the end
            await pool.request("GET", "/echo", [], b"")
            clock.now += 9.0
    assert web_peer.connections == 2  # a new one after 60 s, so DNS changes are seen


async def test_oversized_headers_are_refused_and_the_connection_dropped() -> None:
    big = (
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(80))
        + b"Content-Length: 2\r\n\r\nok"
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(reader)
            writer.write(big if n == 1 else OK)

    async with RawPeer(handler) as peer, HttpPool(peer.url) as pool:
        with pytest.raises(ResponseTooLarge, match="headers over 65536 bytes"):
            await pool.request("GET", "/", [], b"")
        assert (await pool.request("GET", "/", [], b"")).body == b"ok"
    assert peer.connections == 2


async def test_oversized_body_is_refused_and_the_connection_dropped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n")
        for _ in range(30):
            writer.write(b"x" * 10000)
            await writer.drain()

    async with RawPeer(handler) as peer, HttpPool(peer.url, max_body_bytes=100_000) as pool:
        with pytest.raises(ResponseTooLarge, match="body over 100000 bytes"):
            await pool.request("GET", "/", [], b"")
        assert pool._idle == []


async def test_response_headers_are_not_the_parsers_live_dict() -> None:
    async with RawPeer(lambda r, w, n: keep_answering(r, w)) as peer:
        async with HttpPool(peer.url) as pool:
            first = await pool.request("GET", "/", [], b"")
            conn = pool._idle[-1]
            conn.on_header(b"X-Late", b"added by the parser afterwards")
            assert "x-late" not in first.headers
            await pool.request("GET", "/", [], b"")
    assert dict(first.headers) == {"content-length": "2"}


async def test_pool_options_reach_the_providers(web_peer: WebPeer) -> None:
    from bulkmail.providers.directmail import DirectMailProvider
    from bulkmail.providers.ses import SesProvider
    from bulkmail.signing import AlibabaCredentials, AwsCredentials

    options = PoolOptions(idle_timeout=1.5, max_lifetime=30.0, max_body_bytes=4096)
    ses = SesProvider(
        credentials=AwsCredentials("A", "s"), endpoint=web_peer.url, pool_options=options
    )
    dm = DirectMailProvider(
        credentials=AlibabaCredentials("A", "s"), endpoint=web_peer.url, pool_options=options
    )
    for provider in (ses, dm):
        async with provider:
            pool = provider._pool
            assert pool is not None
            assert (pool._idle_timeout, pool._max_lifetime, pool.max_body_bytes) == (
                1.5,
                30.0,
                4096,
            )


async def test_requests_started_in_one_turn_are_written_at_most_16_together() -> None:
    # Many requests started in one turn of the loop (a paced run catching up) must not all
    # wait for the turn's end: the first would leave ~20 ms after its release.
    flushed: list[int] = []

    class Conn:
        def __init__(self, n: int) -> None:
            self.n = n
            self.loop = asyncio.get_running_loop()

        def flush(self) -> None:
            flushed.append(self.n)

    async with HttpPool("http://127.0.0.1:9") as pool:
        for n in range(40):
            pool._cork(Conn(n))  # type: ignore[arg-type]  # white-box: the write batching
        assert flushed == list(range(32))  # two full batches went at once
        await asyncio.sleep(0)  # the turn ends: the rest
        assert flushed == list(range(40))
