"""Campaign-wide transport failures stop or pause the campaign; they never fail the list
(issue #11, item 1). Each test runs the real CLI in a subprocess against the sandbox on
127.0.0.1: behind a TLS front whose certificate the CLI does not trust, and behind a port
where nothing listens until the sandbox starts there."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from bulkmail.servers.sandbox import SANDBOX_AWS, Sandbox
from tests.conftest import CampaignFactory, free_port

N = 30


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class TlsFront:
    """A TLS terminator on 127.0.0.1 that forwards each connection to ``target_port``."""

    def __init__(self, target_port: int, context: ssl.SSLContext) -> None:
        self.target_port = target_port
        self.context = context
        self.port = 0
        self.server: asyncio.Server | None = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def __aenter__(self) -> TlsFront:
        self.server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def _cli(path: Path, endpoint: str, *extra: str, **env: str) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SSL_CERT"))}
    environ.update(
        AWS_ACCESS_KEY_ID=SANDBOX_AWS.access_key_id,
        AWS_SECRET_ACCESS_KEY=SANDBOX_AWS.secret_access_key,
        **env,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkmail",
        str(path),
        "--endpoint",
        endpoint,
        "--json",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    try:
        # The bound of the done-when ("stops within 15 s"); not a timing measurement.
        out, err = await asyncio.wait_for(proc.communicate(), timeout=15)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _rows(path: Path) -> list[dict[str, Any]]:
    results = path.parent / f"{path.stem}.results.jsonl"
    return [json.loads(line) for line in results.read_text().splitlines()]


@pytest.mark.slow
async def test_untrusted_certificate_stops_at_once_then_the_ca_bundle_sends_everyone_once(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    bundle = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    path = make_campaign(
        count=N, provider="name: ses\n  region: us-east-1", extra="max_attempts: 5\n"
    )
    async with (
        Sandbox(record=True) as sandbox,
        TlsFront(int(sandbox.url.rsplit(":", 1)[1]), server_ctx) as front,
    ):
        endpoint = f"https://127.0.0.1:{front.port}"

        code, out, err = await _cli(path, endpoint)
        assert code == 2, err
        assert "SSL_CERT_FILE" in err and f"127.0.0.1:{front.port}" in err, err
        assert "Traceback" not in err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["counts"].get("failed", 0) == 0
        assert summary["counts"]["pending"] == N
        assert sandbox.accepted == []
        assert {r["status"] for r in _rows(path)} == {"pending"}

        code, out, err = await _cli(path, endpoint, SSL_CERT_FILE=str(bundle))
        assert code == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["counts"]["sent"] == N
        sent_to = collections.Counter(to for a in sandbox.accepted for to in a.to)
        assert len(sent_to) == N and set(sent_to.values()) == {1}
        assert {r["attempts"] for r in _rows(path)} == {1}


@pytest.mark.slow
async def test_outage_pauses_then_the_server_comes_up_and_everyone_is_sent_once(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here yet: every connection is refused
    path = make_campaign(
        count=N, provider="name: ses\n  region: us-east-1", extra="max_attempts: 1\n"
    )
    cli = asyncio.ensure_future(_cli(path, f"http://127.0.0.1:{port}", "--outage-wait", "60"))
    journal = path.parent / f"{path.stem}.journal.sqlite"
    for _ in range(200):  # until the run has started sending (into the refused port)
        if journal.exists() or cli.done():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # let the breaker open and a probe or two fail
    assert not cli.done(), cli.result()
    async with Sandbox(port=port, record=True) as sandbox:
        code, out, err = await cli
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["counts"]["sent"] == N and summary["counts"].get("failed", 0) == 0
    sent_to = collections.Counter(to for a in sandbox.accepted for to in a.to)
    assert len(sent_to) == N and set(sent_to.values()) == {1}
    # max_attempts 1: without the breaker the first wave would have failed; nobody is
    # charged for the outage.
    assert {r["attempts"] for r in _rows(path)} == {1}


async def test_outage_longer_than_outage_wait_stops_with_rows_pending_and_says_how_to_resume(
    make_campaign: CampaignFactory,
) -> None:
    port = free_port()
    path = make_campaign(count=N, provider="name: ses\n  region: us-east-1")
    code, out, err = await _cli(path, f"http://127.0.0.1:{port}", "--outage-wait", "2s")
    assert code == 2, err
    assert "could not be reached" in err and "resume" in err and str(path) in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["counts"]["pending"] == N and summary["counts"].get("failed", 0) == 0
    assert {r["attempts"] for r in _rows(path)} == {0}
