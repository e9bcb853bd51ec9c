"""A fast SES/DirectMail-compatible sink for benchmarks, meant to run in its own process.

It must never be the bottleneck, so it is a bare asyncio protocol (uvloop when available)
that parses just enough HTTP/1.1 (request line, Content-Length, keep-alive) and answers:

- ``POST /v2/email/outbound-emails``  → SESv2 ``{"MessageId": ...}``
- ``POST /`` with ``Action=SendEmail`` / ``SendRawEmail`` → SES v1 XML
- ``POST /`` with ``Action=SingleSendMail`` → DirectMail ``{"EnvId", "RequestId"}``
- ``GET /_stats`` → counters and this process's CPU seconds, as JSON

With ``--quota R`` it refuses any request that would make more than R accepted in any
1-second sliding window (SES's throttling error), counting each request as one recipient.
With ``--latency S`` every answer waits S seconds (concurrency must cover it).
Signatures are not checked here (the sandbox and moto do that in the tests).

    python -m benchmarks.sink --port 0 --quota 500     # prints "PORT <n>" when ready
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import resource
import sys
import time

_counter = itertools.count(1)


class Stats:
    def __init__(self) -> None:
        self.accepted = 0
        self.throttled = 0
        self.requests = 0
        self.max_window = 0
        self.window: collections.deque[float] = collections.deque()
        self.first: float | None = None
        self.throttle_times: list[float] = []
        self.open = 0  # connections open now, the most ever open at once, and ever made
        self.max_open = 0
        self.connections = 0
        self.bulk_calls = 0


def _response(status: str, body: bytes, content_type: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"Connection: keep-alive\r\n\r\n"
        + body
    )


_V2_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    b'Connection: keep-alive\r\n\r\n{"MessageId":"sink-%d"}'
)


def _v2_ok() -> bytes:
    n = next(_counter)
    return _V2_OK % (21 + len(str(n)), n)  # the body is 21 bytes and the number


def _v1_ok(action: bytes) -> bytes:
    n = next(_counter)
    body = (
        b'<%sResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><%sResult>'
        b"<MessageId>sink-%d</MessageId></%sResult><ResponseMetadata><RequestId>r-%d"
        b"</RequestId></ResponseMetadata></%sResponse>"
    ) % (action, action, n, action, n, action)
    return _response("200 OK", body, b"text/xml")


def _bulk_ok(statuses: list[bool]) -> bytes:
    parts = [
        b'{"Status":"SUCCESS","MessageId":"sink-%d"}' % next(_counter)
        if ok
        else b'{"Status":"ACCOUNT_THROTTLED","Error":"Maximum sending rate exceeded."}'
        for ok in statuses
    ]
    body = b'{"BulkEmailEntryResults":[' + b",".join(parts) + b"]}"
    return _response("200 OK", body, b"application/json")


def _dm_ok() -> bytes:
    n = next(_counter)
    return _response("200 OK", b'{"EnvId":"%d","RequestId":"r-%d"}' % (n, n), b"application/json")


_V2_THROTTLE = _response(
    "429 Too Many Requests",
    b'{"message":"Maximum sending rate exceeded."}',
    b"application/json",
    b"x-amzn-ErrorType: TooManyRequestsException\r\n",
)
_V1_THROTTLE = _response(
    "400 Bad Request",
    b'<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error><Type>Sender'
    b"</Type><Code>Throttling</Code><Message>Maximum sending rate exceeded.</Message></Error>"
    b"<RequestId>r</RequestId></ErrorResponse>",
    b"text/xml",
)
_DM_THROTTLE = _response(
    "400 Bad Request",
    b'{"Code":"Throttling.User","Message":"Request was denied due to user flow control.",'
    b'"RequestId":"r"}',
    b"application/json",
)


class SinkProtocol(asyncio.Protocol):
    def __init__(self, stats: Stats, quota: float | None, latency: float) -> None:
        self.stats = stats
        self.quota = quota
        self.latency = latency
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport
        stats = self.stats
        stats.open += 1
        stats.connections += 1
        stats.max_open = max(stats.max_open, stats.open)

    def data_received(self, data: bytes) -> None:
        if not self.buffer:
            # Short path: one whole request in one read (every request from an HTTP/1.1
            # client that waits for its answer), answered without copying it into the
            # buffer. The sink shares the clients' cores, so its CPU per request counts.
            end = data.find(b"\r\n\r\n")
            at = data.find(b"\r\nContent-Length: ", 0, end) if end > 0 else -1
            if at > 0:
                stop = data.find(b"\r\n", at + 18)
                if end + 4 + int(data[at + 18 : stop]) == len(data):
                    self.answer(data[:end], data[end + 4 :])
                    return
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop > 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self.answer(head, body)

    def admit(self) -> bool:
        stats = self.stats
        stats.requests += 1
        if self.quota is None:
            stats.accepted += 1
            return True
        now = time.monotonic()
        if stats.first is None:
            stats.first = now
        window = stats.window
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) + 1 > self.quota:
            stats.throttled += 1
            if len(stats.throttle_times) < 100:
                stats.throttle_times.append(round(now - stats.first, 3))
            return False
        window.append(now)
        stats.max_window = max(stats.max_window, len(window))
        stats.accepted += 1
        return True

    def answer(self, head: bytes, body: bytes) -> None:
        line = head.split(b"\r\n", 1)[0]
        if line.startswith(b"GET /_stats"):
            s = self.stats
            usage = resource.getrusage(resource.RUSAGE_SELF)
            doc = {
                "requests": s.requests,
                "accepted": s.accepted,
                "throttled": s.throttled,
                "max_window": s.max_window,
                "throttle_times": s.throttle_times,
                "max_open": s.max_open,
                "connections": s.connections,
                "bulk_calls": s.bulk_calls,
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }
            self.send(_response("200 OK", json.dumps(doc).encode(), b"application/json"))
            return
        if line.startswith(b"GET /v2/email/account"):
            quota = self.quota or 100000
            doc = {"SendQuota": {"Max24HourSend": 1e9, "MaxSendRate": quota, "SentLast24Hours": 0}}
            self.send(_response("200 OK", json.dumps(doc).encode(), b"application/json"))
            return
        if b" /v2/email/outbound-bulk-emails" in line:
            # One entry per destination; each is its own message and counts against the quota.
            self.stats.bulk_calls += 1
            entries = body.count(b'"Destination"')
            self.send(_bulk_ok([self.admit() for _ in range(entries)]))
            return
        if b" /v2/email/outbound-emails" in line:
            self.send(_v2_ok() if self.admit() else _V2_THROTTLE)
            return
        if b"Action=SingleSendMail" in body:
            self.send(_dm_ok() if self.admit() else _DM_THROTTLE)
            return
        action = b"SendRawEmail" if b"Action=SendRawEmail" in body else b"SendEmail"
        self.send(_v1_ok(action) if self.admit() else _V1_THROTTLE)

    def send(self, payload: bytes) -> None:
        if self.transport is None:
            return
        if self.latency:
            asyncio.get_running_loop().call_later(self.latency, self._write, payload)
        else:
            self.transport.write(payload)

    def _write(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.stats.open -= 1


async def serve(port: int, quota: float | None, latency: float) -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkProtocol(stats, quota, latency), "127.0.0.1", port, backlog=1024
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quota", type=float)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    try:
        with runner:
            runner.run(serve(args.port, args.quota, args.latency))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
