"""AWS credentials that stay valid through a long run (issue #11, item 11): the source's cheap
``current()``, its background refresh, and an expiring session token refreshed mid-run
against the sandbox without a failed row. Injected clocks; nothing waits on wall time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from bulkmail.credentials import AwsCredentialSource, Loaded, aws_credential_source
from bulkmail.delivery.sender import Sender, Status
from bulkmail.mail.message import Message
from bulkmail.providers.ses import SesProvider
from bulkmail.servers.sandbox import Sandbox
from bulkmail.signing import AwsCredentials, SigV4Signer
from bulkmail.signing.sigv4 import parse_authorization, verify_request

T0 = 1_800_000_000.0
FIRST = AwsCredentials("ASIAFIRST0000000000", "first/secret/0000000000000000000000000", "tok-1")
SECOND = AwsCredentials("ASIASECOND000000000", "second/secret/000000000000000000000000", "tok-2")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Issuer:
    """A credential loader: FIRST, then SECOND, each valid one hour; counts calls and
    records the thread each ran in."""

    def __init__(self, clock: Clock, fail_first_refresh: bool = False) -> None:
        self.clock = clock
        self.calls = 0
        self.threads: list[str] = []
        self.fail_first_refresh = fail_first_refresh
        self.on_issue: Callable[[AwsCredentials], None] = lambda creds: None

    def __call__(self) -> Loaded:
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        if self.calls == 2 and self.fail_first_refresh:
            raise ConnectionError("sts unreachable")
        creds = FIRST if self.calls == 1 else SECOND
        self.on_issue(creds)
        return creds, self.clock.now + 3600


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


async def test_current_is_cheap_until_five_minutes_remain_then_refreshes_in_a_thread() -> None:
    clock = Clock()
    issuer = Issuer(clock)
    source = AwsCredentialSource(issuer, clock=clock)
    assert source.current() is FIRST and issuer.calls == 1
    clock.now += 3600 - 301
    assert source.current() is FIRST and issuer.calls == 1  # > 5 min left: no fetch
    clock.now += 2
    assert source.current() is FIRST  # refresh started; the old ones are still valid
    await _until(lambda: source.current() is SECOND)
    assert issuer.calls == 2 and source.refreshes == 1
    assert issuer.threads[1] != threading.current_thread().name  # never on the loop
    assert source.expires_at == clock.now + 3600


async def test_a_failed_refresh_keeps_the_old_credentials_and_tries_again() -> None:
    clock = Clock()
    issuer = Issuer(clock, fail_first_refresh=True)
    source = AwsCredentialSource(issuer, clock=clock, retry_after=30)
    clock.now += 3600 - 200
    source.current()
    await _until(lambda: source.last_error is not None)
    assert "ConnectionError" in (source.last_error or "") and source.current() is FIRST
    assert issuer.calls == 2
    clock.now += 31
    source.current()
    await _until(lambda: source.current() is SECOND)
    assert source.last_error is None


def test_short_lived_credentials_refresh_at_half_life() -> None:
    clock = Clock()
    source = AwsCredentialSource(lambda: (FIRST, clock.now + 120), clock=clock)
    assert source._refresh_at == T0 + 60


def test_without_botocore_the_environment_or_file_is_read_once() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    source = aws_credential_source(env, use_botocore=False)
    assert source.current() == AwsCredentials("AKIAENV", "s3cr3t") and source.expires_at is None


def test_the_derived_key_cache_follows_the_access_key_id() -> None:
    signer = SigV4Signer(FIRST, region="us-east-1", service="ses")
    first = signer.sign("POST", "h", "/", "", {}, b"x", T0)
    second = signer.sign("POST", "h", "/", "", {}, b"x", T0, SECOND)  # same day, new key
    for headers, creds in ((first, FIRST), (second, SECOND)):
        auth = parse_authorization(headers["Authorization"])
        assert auth.access_key_id == creds.access_key_id
        assert verify_request(
            method="POST",
            path="/",
            query="",
            headers={"host": "h", **{k.lower(): v for k, v in headers.items()}},
            body=b"x",
            secret_access_key=creds.secret_access_key,
            authorization=auth,
        )


def _messages(start: int, n: int) -> list[Message]:
    return [
        Message(to=f"u{i}@example.org", sender="news@example.org", subject="Hi", text="Hello")
        for i in range(start, start + n)
    ]


async def test_an_expiring_session_token_is_refreshed_mid_run_without_a_failed_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    issuer = Issuer(clock)
    valid: dict[str | None, AwsCredentials] = {}  # what the service accepts, by token
    issuer.on_issue = lambda creds: valid.__setitem__(creds.session_token, creds)
    source = AwsCredentialSource(issuer, clock=clock)
    async with Sandbox(record=True, aws=FIRST) as sandbox:
        check = sandbox._check_aws

        def check_by_token(request: Any, *args: Any) -> Any:
            token = request.headers.get("X-Amz-Security-Token")
            sandbox._aws = valid.get(token, AwsCredentials("AKIAEXPIRED", "x", "expired"))
            return check(request, *args)

        monkeypatch.setattr(sandbox, "_check_aws", check_by_token)
        ses = SesProvider(credentials=source, endpoint=sandbox.url)
        async with Sender(ses, rate=1000) as sender:
            before = await asyncio.gather(*(sender.send(m) for m in _messages(0, 20)))
            clock.now += 3600 - 240  # four minutes left: the next request starts a refresh
            during = await asyncio.gather(*(sender.send(m) for m in _messages(20, 20)))
            await _until(lambda: source.current() is SECOND)
            del valid["tok-1"]  # the first token expires
            clock.now += 240
            after = await asyncio.gather(*(sender.send(m) for m in _messages(40, 20)))
    deliveries = [*before, *during, *after]
    assert [d.status for d in deliveries] == [Status.SENT] * 60, deliveries[-1]
    assert sender.stopped is None
    assert len({to for a in sandbox.accepted for to in a.to}) == 60 == len(sandbox.accepted)
    assert issuer.calls == 2 and source.refreshes == 1


def test_keys_in_the_environment_skip_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore's chain would answer the same keys (the environment comes first) and cannot
    # refresh them; importing it costs ~0.3 s of start-up, so the env reader answers.
    from bulkmail.credentials import aws_credential_source

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENVONLY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    source = aws_credential_source()
    assert source.method == "env-or-file"
    assert source.current().access_key_id == "AKIDENVONLY"
