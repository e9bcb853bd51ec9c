"""Answers that do not prove the message was refused (issue #11, item 8).

A scripted HTTP peer on 127.0.0.1 answers each request in turn; SES and DirectMail providers
go through the real :class:`Sender`. A retry after 500/502/504 or a lost answer is flagged
``possible_duplicate`` (``uncertain`` under at-most-once); after a 503 it is not; a 200 without
an id is sent, once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from bulkmail.delivery.sender import RetryPolicy, Sender, Status
from bulkmail.mail.message import Message
from bulkmail.providers.directmail import DirectMailProvider
from bulkmail.providers.ses import SesProvider
from bulkmail.signing import AlibabaCredentials, AwsCredentials

SES_OK = b'{"MessageId":"m-1"}'
LOST = b""  # close the connection without an answer


def _answer(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 500: "Internal", 502: "Bad Gateway", 503: "Unavailable"}.get(status, "X")
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Content-Type: application/json\r\n\r\n" + body


class Scripted:
    """Answers request n with ``script[n]`` (the last one repeats); counts requests."""

    def __init__(self, script: list[bytes]) -> None:
        self.script = script
        self.requests = 0
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                answer = self.script[min(self.requests, len(self.script) - 1)]
                self.requests += 1
                if answer == LOST:
                    break
                writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def peer() -> AsyncIterator[Scripted]:
    scripted = Scripted([])
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    scripted.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield scripted


async def _no_sleep(_: float) -> None:
    return None


def _message() -> Message:
    return Message(to="ana@example.org", sender="news@example.org", subject="Hi", text="Hello")


async def _send_ses(peer: Scripted, *, at_most_once: bool = False) -> tuple[Status, bool, int]:
    ses = SesProvider(credentials=AwsCredentials("AKID", "secret"), endpoint=peer.url)
    sender = Sender(
        ses,
        rate=1000,
        retry=RetryPolicy(max_attempts=3),
        at_most_once=at_most_once,
        sleep=_no_sleep,
        rng=random.Random(1),
    )
    async with sender:
        delivery = await sender.send(_message())
    return delivery.status, delivery.possible_duplicate, delivery.attempts


@pytest.mark.parametrize(
    ("first", "duplicate"),
    [
        (_answer(500, b'{"__type":"InternalFailure","message":"x"}'), True),
        (_answer(502, b"<html>bad gateway</html>"), True),
        (_answer(504, b"<html>gateway timeout</html>"), True),
        (LOST, True),
        (_answer(503, b'{"__type":"ServiceUnavailable","message":"x"}'), False),
    ],
    ids=["500", "502", "504", "no-answer", "503"],
)
async def test_retry_is_flagged_unless_the_answer_proves_refusal(
    peer: Scripted, first: bytes, duplicate: bool
) -> None:
    peer.script = [first, _answer(200, SES_OK)]
    assert await _send_ses(peer) == (Status.SENT, duplicate, 2)
    assert peer.requests == 2


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_at_most_once_holds_unproven_answers_uncertain(peer: Scripted, status: int) -> None:
    peer.script = [_answer(status, b"{}"), _answer(200, SES_OK)]
    assert await _send_ses(peer, at_most_once=True) == (Status.UNCERTAIN, True, 1)
    assert peer.requests == 1


async def test_ses_200_without_message_id_is_sent_once(peer: Scripted) -> None:
    peer.script = [_answer(200, b"{}"), _answer(200, SES_OK)]
    assert await _send_ses(peer) == (Status.SENT, False, 1)
    assert peer.requests == 1


async def test_directmail_200_without_env_id_is_sent_once(peer: Scripted) -> None:
    peer.script = [_answer(200, b'{"RequestId":"r"}'), _answer(200, b'{"EnvId":"e"}')]
    dm = DirectMailProvider(credentials=AlibabaCredentials("LTAI", "s"), endpoint=peer.url)
    async with Sender(dm, rate=1000, sleep=_no_sleep) as sender:
        delivery = await sender.send(_message())
    assert (delivery.status, delivery.message_id, delivery.attempts) == (Status.SENT, None, 1)
    assert peer.requests == 1


async def test_directmail_502_retry_is_flagged(peer: Scripted) -> None:
    peer.script = [_answer(502, b"<html>bad gateway</html>"), _answer(200, b'{"EnvId":"e"}')]
    dm = DirectMailProvider(credentials=AlibabaCredentials("LTAI", "s"), endpoint=peer.url)
    async with Sender(dm, rate=1000, sleep=_no_sleep) as sender:
        delivery = await sender.send(_message())
    assert (delivery.status, delivery.possible_duplicate, delivery.attempts) == (
        Status.SENT,
        True,
        2,
    )
