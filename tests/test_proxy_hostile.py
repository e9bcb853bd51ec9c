"""Hostile clients over raw sockets on 127.0.0.1: every one gets SES's error shape or a
closed connection, one log line, no traceback, no echo of a credential (bounded counts)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from ._proxy_helpers import KEY_ID, running

LIMITS = "header_timeout: 0.5\nbody_timeout: 0.5\nmax_connections: 40\n"
AUTH = (
    f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20260101/us-east-1/ses/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=deadbeef-not-hex-SECRETLOOKING"
)


async def exchange(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data``, read until the server closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1 << 16), wait)
    except ConnectionResetError:  # closed at once (over the connection limit)
        return b""
    finally:
        writer.close()


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("bulkmail")]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="bulkmail")
    return caplog


async def test_garbage_and_malformed_requests(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, extra=LIMITS) as r:
        port = r.proxy.http.port  # type: ignore[union-attr]
        garbage = await exchange(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        logs.clear()
        answer = await exchange(
            port,
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Date: 20260101T000000Z\r\n"
            b"Authorization: " + AUTH.encode() + b"\r\nContent-Length: 4\r\n\r\n\xff\xfe\xfd\xfc",
        )
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"<Code>IncompleteSignature</Code>" in answer
        assert b"SECRETLOOKING" not in answer and b"deadbeef" not in answer
        assert len(_lines(logs)) == 1 and "SECRETLOOKING" not in logs.text
        bad_header = await exchange(port, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        assert bad_header.startswith(b"HTTP/1.1 400 ")
        chunked = await exchange(
            port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        assert chunked.startswith(b"HTTP/1.1 411 ")
        unsigned = await exchange(
            port, b"POST /v2/email/outbound-emails HTTP/1.1\r\nContent-Length: 2\r\n\r\n\xff\xff"
        )
        assert unsigned.startswith(b"HTTP/1.1 403 ")
        assert b"MissingAuthenticationTokenException" in unsigned
    assert "Traceback" not in logs.text
    assert all(r.exc_info is None for r in logs.records)
    assert r.sandbox.stats["accepted"] == 0


async def test_huge_declared_body_refused_before_reading(tmp_path: Path) -> None:
    async with running(tmp_path, extra=LIMITS) as r:
        port = r.proxy.http.port  # type: ignore[union-attr]
        for path in (b"/", b"/v2/email/outbound-emails"):
            answer = await exchange(
                port,
                b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n",
            )
            assert answer.startswith(b"HTTP/1.1 413 ")
            assert b"Connection: close" in answer


async def test_slow_clients_are_cut_off(tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, extra=LIMITS) as r:
        port = r.proxy.http.port  # type: ignore[union-attr]
        # a head that never ends, then a body that never comes: closed after the deadlines
        assert await exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\n") == b""
        assert await exchange(port, b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc") == b""
        assert await exchange(port, b"") == b""  # connected, said nothing
    assert len(_lines(logs)) == 3 and "Traceback" not in logs.text


async def test_idle_connections_are_bounded(tmp_path: Path) -> None:
    async with running(
        tmp_path, extra=LIMITS.replace("header_timeout: 0.5", "header_timeout: 5")
    ) as r:
        port = r.proxy.http.port  # type: ignore[union-attr]
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
        try:
            await asyncio.sleep(0.2)
            assert r.proxy.http.open_connections == 40  # type: ignore[union-attr]
            # the 41st is closed at once, without a request being read
            extra = await exchange(port, b"GET / HTTP/1.1\r\n\r\n", wait=2)
            assert extra == b""
        finally:
            for _, writer in idle:
                writer.close()
        await asyncio.sleep(0.2)
        answer = await exchange(
            port, b"GET /v2/email/account HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 403 ")  # served again once they went away


async def test_flood_of_unsigned_requests(tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, extra=LIMITS) as r:
        port = r.proxy.http.port  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\nAction=SendEmail&"
        writer.write(request * 200)
        await writer.drain()
        answers = 0
        while answers < 200:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 403 ")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert b"<Code>MissingAuthenticationToken</Code>" in await reader.readexactly(length)
            answers += 1
        writer.close()
    assert len([m for m in _lines(logs) if "MissingAuthenticationToken" in m]) == 200
    assert r.sandbox.stats["accepted"] == 0


async def test_sandbox_shares_the_hardening(caplog: pytest.LogCaptureFixture) -> None:
    """The sandbox (same SES code): 413 before reading, one line per bad request line,
    and no error echoes the client's Authorization header."""
    from bulkmail.servers.sandbox import Sandbox

    caplog.set_level(logging.DEBUG, logger="bulkmail")
    async with Sandbox() as sandbox:
        port = int(sandbox.url.rsplit(":", 1)[1])
        big = await exchange(
            port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n", wait=3
        )
        assert big.startswith(b"HTTP/1.1 413 ") and b"RequestEntityTooLarge" in big
        garbage = await exchange(port, b"\x16\x03\x01garbage\r\n\r\n", wait=3)
        assert garbage.startswith(b"HTTP/1.0 400 ")
        echo = await exchange(
            port,
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Date: 2026\r\nAuthorization: "
            + AUTH.encode() + b"\r\nContent-Length: 0\r\n\r\n",
            wait=3,
        )  # fmt: skip
        assert b"IncompleteSignature" in echo and b"SECRETLOOKING" not in echo
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
