"""The proxy under load and under SIGKILL (slow: each drains thousands of recipients)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bulkmail.servers.sandbox import SANDBOX_AWS, Sandbox

from ._proxy_helpers import ENV, KEY_ID, SECRET, client, recorded, running, until
from .conftest import free_port

pytestmark = pytest.mark.slow

SIMPLE = {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi"}}}


def _send_many(url: str, start: int, count: int, *, v2: bool, threads: int = 8) -> list[str]:
    """``count`` messages of 10 recipients (To 4, Cc 3, Bcc 3), from ``threads`` threads."""
    clients = [client("sesv2" if v2 else "ses", url) for _ in range(threads)]

    def one(i: int) -> str:
        rcpt = [f"m{i}-r{j}@x.org" for j in range(10)]
        ses = clients[i % threads]
        if v2:
            answer = ses.send_email(
                FromEmailAddress="news@example.com",
                Destination={"ToAddresses": rcpt[:4], "CcAddresses": rcpt[4:7],
                             "BccAddresses": rcpt[7:]},
                Content={"Simple": SIMPLE},
            )  # fmt: skip
        else:
            answer = ses.send_email(
                Source="news@example.com",
                Destination={"ToAddresses": rcpt[:4], "CcAddresses": rcpt[4:7],
                             "BccAddresses": rcpt[7:]},
                Message=SIMPLE,
            )  # fmt: skip
        return str(answer["MessageId"])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(start, start + count)))


async def test_500_messages_of_10_become_5000_single_sends(tmp_path: Path) -> None:
    async with running(tmp_path, quota=500, outbox=False) as r:  # no .eml writes on the loop
        started = time.monotonic()
        v1 = asyncio.to_thread(_send_many, r.url, 0, 250, v2=False)
        v2 = asyncio.to_thread(_send_many, r.url, 250, 250, v2=True)
        mids = [*await v1, *await v2]
        accepted_in = time.monotonic() - started
        accepted_at = time.time()
        assert len(set(mids)) == 500
        assert await until(lambda: r.sandbox.stats["accepted"] >= 5000, 50)
        assert await recorded(r, 5000, 10)
        sent = collections.Counter(a.to for a in r.sandbox.accepted)
        expected = {(f"m{i}-r{j}@x.org",) for i in range(500) for j in range(10)}
        assert set(sent) == expected and max(sent.values()) == 1  # exactly once each
        assert all(len(a.to) == 1 and "CcAddresses" not in a.params.get("Destination", {})
                   for a in r.sandbox.accepted)  # fmt: skip
        assert r.sandbox.stats["throttled"] <= 5  # <= 0.1 %
        times = sorted(a.received_at for a in r.sandbox.accepted)
        drain = 5000 / max(times[-1] - times[0], 1e-9)
        backlog = [t for t in times if t >= accepted_at]  # sent once every request was in
        after = len(backlog) / max(times[-1] - accepted_at, 1e-9)
        print(f"\naccepted 500 requests in {accepted_in:.2f}s; upstream {drain:.0f} recipients/s "
              f"overall, {after:.0f}/s on the backlog ({len(backlog)} recipients) once all were "
              f"in (quota 500/s); throttled {r.sandbox.stats['throttled']}")  # fmt: skip


def _proxy_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "bulkmail", "proxy", str(config)]


def _start(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen(_proxy_cmd(config), env=env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


async def _wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError("the proxy did not start listening")


async def test_sigkill_during_drain_loses_nobody(tmp_path: Path) -> None:
    async with Sandbox(quota=500) as sandbox:
        port = free_port()
        config = tmp_path / "proxy.yaml"
        config.write_text(
            f"listen: 127.0.0.1:{port}\n"
            f"clients:\n  - access_key_id: {KEY_ID}\n    secret_env: PROXY_TEST_SECRET\n"
            "    identities: [example.com]\n"
            f"provider: {{name: ses, region: us-east-1, endpoint: '{sandbox.url}'}}\n"
            "rate: 500\njournal: proxy.journal.sqlite\nresults: proxy.results.jsonl\n"
        )
        env = {
            **os.environ, **ENV, "PYTHONPATH": str(Path(__file__).parents[1]),
            "AWS_ACCESS_KEY_ID": SANDBOX_AWS.access_key_id,
            "AWS_SECRET_ACCESS_KEY": SANDBOX_AWS.secret_access_key,
        }  # fmt: skip
        env.pop("AWS_SESSION_TOKEN", None)
        log = tmp_path / "proxy.log"
        proc = _start(config, env, log)
        try:
            await _wait_port(port)
            url = f"http://127.0.0.1:{port}"
            await asyncio.to_thread(_send_many, url, 0, 300, v2=True)  # 3,000 recipients
            assert await until(lambda: sandbox.stats["accepted"] >= 800, 30)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            assert sandbox.stats["accepted"] < 3000  # killed with a backlog
            proc = _start(config, env, log)
            await _wait_port(port)
            everyone = {f"m{i}-r{j}@x.org" for i in range(300) for j in range(10)}
            assert await until(lambda: {a.to[0] for a in sandbox.accepted} >= everyone, 40)
            await asyncio.sleep(0.5)  # the last outcomes reach the journal
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        with sqlite3.connect(tmp_path / "proxy.journal.sqlite") as db:
            rows: list[Any] = db.execute(
                "SELECT email, state, possible_duplicate FROM recipients"
            ).fetchall()
        assert len(rows) == 3000 and {state for _, state, _ in rows} == {"sent"}
        flagged = {email for email, _, dup in rows if dup}
        sent = collections.Counter(a.to[0] for a in sandbox.accepted)
        duplicates = {email for email, n in sent.items() if n > 1}
        assert duplicates <= flagged  # duplicates only among flagged rows
        text = log.read_text()
        assert "Traceback" not in text and SECRET not in text
        assert "possible_duplicate" in text or not flagged
