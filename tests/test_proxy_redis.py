"""The proxy with ``queue: redis://``: the fleet's Redis (a real valkey-server) as the accept
queue, boto3 clients in front, the sandbox upstream; several proxies sharing one queue."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fleet_conftest import ValkeyServer

from ._proxy_helpers import KEY_ID, OTHER_ID, OTHER_SECRET, client, recorded, running, until

SIMPLE = {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi"}}}


async def call(fn: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(fn, **kw)


async def test_ses_and_sesv2_through_a_redis_queue_exactly_once(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    async with running(tmp_path, queue=valkey.url) as r:
        v2 = client("sesv2", r.url)
        v1 = client("ses", r.url)
        mids = []
        for i in range(10):
            rcpt = [f"m{i}-r{j}@x.org" for j in range(10)]
            answer = await call(
                v2.send_email,
                FromEmailAddress="news@example.com",
                Destination={"ToAddresses": rcpt[:4], "CcAddresses": rcpt[4:7],
                             "BccAddresses": rcpt[7:]},
                Content={"Simple": SIMPLE},
            )  # fmt: skip
            mids.append(answer["MessageId"])
        answer = await call(
            v1.send_email,
            Source="news@example.com",
            Destination={"ToAddresses": ["v1-a@x.org"], "BccAddresses": ["v1-b@x.org"]},
            Message=SIMPLE,
        )
        assert await until(lambda: r.sandbox.stats["accepted"] >= 102, 20)
        assert await recorded(r, 102)
        sent = collections.Counter(a.to for a in r.sandbox.accepted)
        expected = {(f"m{i}-r{j}@x.org",) for i in range(10) for j in range(10)}
        assert set(sent) == expected | {("v1-a@x.org",), ("v1-b@x.org",)}
        assert max(sent.values()) == 1
        assert all("CcAddresses" not in a.params.get("Destination", {}) for a in r.sandbox.accepted)
        counts = await r.proxy.queue.counts()  # type: ignore[union-attr]
        assert counts["sent"] == 102 and counts["total"] == 102 and counts["pending"] == 0
        status = await r.proxy.queue.status(mids[0], KEY_ID)  # type: ignore[union-attr]
        assert status is not None
        assert {x["UpstreamMessageId"] for x in status["Recipients"]} == {
            a.message_id for a in r.sandbox.accepted if a.to[0].startswith("m0-")
        }
        quota = await call(v1.get_send_quota)
        assert quota["SentLast24Hours"] == 102.0
    records = [orjson.loads(x) for x in (tmp_path / "proxy.results.jsonl").read_bytes().splitlines()]
    assert len(records) == 102 and {x["status"] for x in records} == {"sent"}
    assert {x["proxy_message_id"] for x in records} >= set(mids)
