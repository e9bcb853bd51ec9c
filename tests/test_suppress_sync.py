"""`bulkmail suppress sync` against the sandbox's SESv2 suppression list (SigV4 checked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkmail.cli import main
from bulkmail.deliverability.account_sync import sync_suppression
from bulkmail.deliverability.ses_events import Event
from bulkmail.deliverability.store import EventStore
from bulkmail.errors import FatalProviderError
from bulkmail.servers.sandbox import SANDBOX_AWS, Sandbox
from bulkmail.signing import AwsCredentials


async def test_merges_both_ways_across_pages(tmp_path: Path) -> None:
    local = tmp_path / "suppressed.txt"
    local.write_text("# ours\nana@example.org\nShared@Example.org\ncarl@example.org\n")
    events = tmp_path / "events.sqlite"
    with EventStore.open(events) as store:
        store.add(
            "s", [Event("complaint", "m", "carl@example.org", None, None, None)], received_at=0
        )
    async with Sandbox() as sandbox:
        for i in range(2500):  # three pages of 1000
            sandbox.suppression.entries[f"r{i}@example.net"] = (f"r{i}@example.net", "BOUNCE", 0)
        sandbox.suppression.entries["shared@example.org"] = ("shared@example.org", "BOUNCE", 0)
        result = await sync_suppression(
            local, credentials=SANDBOX_AWS, region="us-east-1", endpoint=sandbox.url,
            events=events,
        )  # fmt: skip
        remote = sandbox.suppression.entries
        assert remote["ana@example.org"][1] == "BOUNCE"
        assert remote["carl@example.org"][1] == "COMPLAINT"
        assert sandbox.stats["signature_failures"] == 0
        # a second sync finds nothing to do
        again = await sync_suppression(
            local, credentials=SANDBOX_AWS, region="us-east-1", endpoint=sandbox.url
        )
    assert (result.pulled, result.pushed) == (2500, 2)
    assert (again.pulled, again.pushed) == (0, 0)
    lines = local.read_text().splitlines()
    assert lines[:4] == ["# ours", "ana@example.org", "Shared@Example.org", "carl@example.org"]
    assert len(lines) == 4 + 2500 and "r2499@example.net" in lines
    assert result.local == again.local == 2503


async def test_a_bad_key_is_refused_cleanly(tmp_path: Path) -> None:
    async with Sandbox() as sandbox:
        with pytest.raises(FatalProviderError, match="403 UnrecognizedClientException"):
            await sync_suppression(
                tmp_path / "s.txt",
                credentials=AwsCredentials("AKIAWRONG0000000000", "nope"),
                region="us-east-1",
                endpoint=sandbox.url,
            )
    assert not (tmp_path / "s.txt").exists()


async def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SANDBOX_AWS.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SANDBOX_AWS.secret_access_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    local = tmp_path / "s.txt"
    local.write_text("ana@example.org\n")
    async with Sandbox() as sandbox:
        import asyncio

        argv = ["suppress", "sync", "--region", "us-east-1", "--file", str(local)]
        code = await asyncio.to_thread(main, [*argv, "--endpoint", sandbox.url])
        assert code == 0
        assert "ana@example.org" in sandbox.suppression.entries
    assert "0 added to" in capsys.readouterr().out


async def test_an_echoed_canonical_request_is_scrubbed(tmp_path: Path) -> None:
    """AWS echoes the canonical request (with the session token) in signature errors."""
    from aiohttp import web

    token = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN"

    async def refuse(request: web.Request) -> web.Response:
        echoed = request.headers.get("X-Amz-Security-Token", "")
        body = (
            '{"message": "The request signature we calculated does not match. The Canonical '
            f"String for this request should have been 'GET /v2/email/suppression/addresses "
            f"x-amz-security-token:{echoed}'\"}}"
        )
        return web.Response(
            status=403, text=body, headers={"x-amzn-ErrorType": "SignatureDoesNotMatch"}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with pytest.raises(FatalProviderError) as info:
            await sync_suppression(
                tmp_path / "s.txt",
                credentials=AwsCredentials("AKIAEXAMPLE", "secret-key", token),
                region="us-east-1",
                endpoint=f"http://127.0.0.1:{port}",
            )
    finally:
        await runner.cleanup()
    text = str(info.value)
    assert "403 SignatureDoesNotMatch" in text and "does not match" in text
    assert token not in text and "Canonical" not in text
