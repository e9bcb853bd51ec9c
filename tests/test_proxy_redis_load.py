"""Two ``bulkmail proxy`` processes on one Redis queue; one is SIGKILLed mid-drain (slow)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
from pathlib import Path

import pytest

from bulkmail.fleet.link import Link
from bulkmail.proxy._redis_lanes import ProxyKeys
from bulkmail.proxy._redis_status import message_status
from bulkmail.servers.sandbox import SANDBOX_AWS, Faults, Sandbox
from tests.fleet_conftest import ValkeyServer

from ._proxy_helpers import ENV, KEY_ID, SECRET, recorded, running, until
from .conftest import free_port
from .test_proxy_load import _send_many, _start, _wait_port

pytestmark = pytest.mark.slow


def _write(folder: Path, port: int, upstream: str, redis: str) -> Path:
    folder.mkdir()
    config = folder / "proxy.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"clients:\n  - access_key_id: {KEY_ID}\n    secret_env: PROXY_TEST_SECRET\n"
        "    identities: [example.com]\n"
        f"provider: {{name: ses, region: us-east-1, endpoint: '{upstream}'}}\n"
        f"rate: 400\nqueue: {{url: '{redis}', visibility: 2}}\nresults: proxy.results.jsonl\n"
    )
    return config


async def test_sigkill_one_of_two_proxies_sharing_redis_loses_nobody(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    env = {
        **os.environ, **ENV, "PYTHONPATH": str(Path(__file__).parents[1]),
        "AWS_ACCESS_KEY_ID": SANDBOX_AWS.access_key_id,
        "AWS_SECRET_ACCESS_KEY": SANDBOX_AWS.secret_access_key,
    }  # fmt: skip
    env.pop("AWS_SESSION_TOKEN", None)
    async with Sandbox(quota=400, faults=Faults(latency=0.02)) as sandbox:
        ports = [free_port(), free_port()]
        configs = [
            _write(tmp_path / n, p, sandbox.url, valkey.url)
            for n, p in zip("ab", ports, strict=True)
        ]
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        procs = [_start(c, env, log) for c, log in zip(configs, logs, strict=True)]
        try:
            for port in ports:
                await _wait_port(port)
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            mids = [
                *await asyncio.to_thread(_send_many, urls[0], 0, 100, v2=True),
                *await asyncio.to_thread(_send_many, urls[1], 100, 100, v2=False),
            ]  # 2,000 recipients, half accepted by each
            assert await until(lambda: len(sandbox.accepted) >= 600, 30)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            assert len(sandbox.accepted) < 2000  # killed with a backlog
            everyone = {f"m{i}-r{j}@x.org" for i in range(200) for j in range(10)}
            assert await until(lambda: {a.to[0] for a in sandbox.accepted} >= everyone, 60)
            link = Link.from_url(valkey.url)
            try:
                keys = ProxyKeys("default")

                async def settled() -> bool:
                    raw = await link.call(
                        lambda r: r.hmget(keys.books.counts, "pending", "in_flight")
                    )
                    return sum(int(x or 0) for x in raw) == 0

                for _ in range(100):
                    if await settled():
                        break
                    await asyncio.sleep(0.1)
                docs = [await message_status(link, keys, mid, KEY_ID) for mid in mids]
            finally:
                await link.close()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(20)
    assert all(doc is not None for doc in docs)
    rows = [r for doc in docs if doc for r in doc["Recipients"]]
    assert len(rows) == 2000 and {r["Status"] for r in rows} == {"sent"}
    flagged = {r["Email"] for r in rows if r["PossibleDuplicate"]}
    sent = collections.Counter(a.to[0] for a in sandbox.accepted)
    assert {email for email, n in sent.items() if n > 1} <= flagged
    texts = [log.read_text() for log in logs]
    assert all("Traceback" not in t and SECRET not in t for t in texts)
    assert "took over chunk" in texts[1]  # the survivor took the dead one's work
    print(f"\n{len(sandbox.accepted)} sends for 2000 recipients; {len(flagged)} flagged")


async def test_500_messages_of_10_through_redis_become_5000_single_sends(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    async with running(tmp_path, quota=500, outbox=False, queue=valkey.url) as r:
        v1 = asyncio.to_thread(_send_many, r.url, 0, 250, v2=False)
        v2 = asyncio.to_thread(_send_many, r.url, 250, 250, v2=True)
        mids = [*await v1, *await v2]
        assert len(set(mids)) == 500
        assert await until(lambda: r.sandbox.stats["accepted"] >= 5000, 60)
        assert await recorded(r, 5000, 10)
        sent = collections.Counter(a.to for a in r.sandbox.accepted)
        expected = {(f"m{i}-r{j}@x.org",) for i in range(500) for j in range(10)}
        assert set(sent) == expected and max(sent.values()) == 1  # exactly once each
        assert r.sandbox.stats["throttled"] <= 5  # <= 0.1 %
        times = sorted(a.received_at for a in r.sandbox.accepted)
        print(f"\nupstream {5000 / max(times[-1] - times[0], 1e-9):.0f} recipients/s "
              f"(quota 500/s); throttled {r.sandbox.stats['throttled']}")  # fmt: skip
