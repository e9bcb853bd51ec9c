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
    records = [
        orjson.loads(x) for x in (tmp_path / "proxy.results.jsonl").read_bytes().splitlines()
    ]
    assert len(records) == 102 and {x["status"] for x in records} == {"sent"}
    assert {x["proxy_message_id"] for x in records} >= set(mids)


def _config(tmp: Path, url: str, name: str, *, rate: str = "200") -> Any:
    from bulkmail.proxy import ProxyConfig

    from ._proxy_helpers import ENV, write_config

    folder = tmp / name
    folder.mkdir()
    queue = f"{{url: '{url}', visibility: 1}}"
    return ProxyConfig.from_file(write_config(folder, rate=rate, queue=queue), environ=ENV)


async def _crash(proxy: Any) -> None:
    """As a SIGKILL would leave it: nothing more reaches Redis from ``proxy`` (no record, no
    heartbeat, nothing given back), its engine's tasks cancelled hard, its chunks held."""
    queue = proxy.queue
    never = asyncio.Event()

    async def frozen(*args: Any, **kw: Any) -> Any:
        await never.wait()

    proxy.sender.provider.send = frozen  # nothing more leaves for upstream
    queue.link.call = queue._accept_link.call = frozen
    run = proxy._run
    while not run.done():
        run.cancel()  # its sends in flight end now, unrecorded (left in flight in Redis)
        await asyncio.wait([run], timeout=0.5)
    await proxy.http.stop()

    async def nothing() -> int:
        return 0

    queue.release = nothing
    del queue.link.call, queue._accept_link.call, proxy.sender.provider.send
    proxy._run = None
    await proxy._stack.aclose()  # closes its connections and its provider


def _send(url: str, start: int, count: int) -> list[str]:
    ses = client("sesv2", url)
    mids = []
    for i in range(start, start + count):
        rcpt = [f"m{i}-r{j}@x.org" for j in range(10)]
        answer = ses.send_email(
            FromEmailAddress="news@example.com",
            Destination={"ToAddresses": rcpt[:4], "CcAddresses": rcpt[4:7],
                         "BccAddresses": rcpt[7:]},
            Content={"Simple": SIMPLE},
        )  # fmt: skip
        mids.append(str(answer["MessageId"]))
    return mids


async def test_two_proxies_share_a_queue_and_one_finishes_what_a_dead_one_held(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    from bulkmail.proxy import Proxy
    from bulkmail.servers.sandbox import SANDBOX_AWS, Faults, Sandbox

    async with Sandbox(quota=300, faults=Faults(latency=0.03)) as sandbox:
        kw = {"endpoint": sandbox.url, "credentials": SANDBOX_AWS, "grace": 2}
        a = Proxy(_config(tmp_path, valkey.url, "a"), **kw)
        b = Proxy(_config(tmp_path, valkey.url, "b"), **kw)
        async with a, b:
            mids = await asyncio.to_thread(_send, a.url, 0, 20)
            mids += await asyncio.to_thread(_send, b.url, 20, 20)  # 400 recipients in all
            assert await until(lambda: len(sandbox.accepted) >= 120, 20)
            await _crash(a)
            everyone = {f"m{i}-r{j}@x.org" for i in range(40) for j in range(10)}
            assert await until(lambda: {x.to[0] for x in sandbox.accepted} >= everyone, 30)
            assert b.queue is not None
            assert await until(lambda: b.queue.backlog == 0, 10)  # type: ignore[union-attr]
            counts = await b.queue.counts()
            reclaimed = sum(lane.intake.reclaimed for lane in b.queue.lanes.lanes)  # type: ignore[attr-defined]
            print(
                f"\n{len(sandbox.accepted)} sends for 400 recipients; {reclaimed} chunks taken over"
            )
            statuses = [await b.queue.status(mid, KEY_ID) for mid in mids]
        assert counts["sent"] == counts["total"] == 400 and counts["in_flight"] == 0
        assert reclaimed > 0  # the dead proxy held chunks, and b took them over
        sent = collections.Counter(x.to[0] for x in sandbox.accepted)
        flagged = {
            rcpt["Email"]
            for doc in statuses
            if doc is not None
            for rcpt in doc["Recipients"]
            if rcpt["PossibleDuplicate"]
        }
        assert all(doc is not None for doc in statuses)
        assert {n for _, n in sent.items()} <= {1, 2}
        assert {email for email, n in sent.items() if n > 1} <= flagged
        assert all(r["Status"] == "sent" for doc in statuses if doc for r in doc["Recipients"])
        assert a.sender is not None and b.sender is not None
        pacers = {a.sender.limiter.account, b.sender.limiter.account}  # type: ignore[attr-defined]
        assert len(pacers) == 1  # one quota for both: the fleet's pacer on the same account


async def test_any_proxy_answers_a_messages_status(valkey: ValkeyServer, tmp_path: Path) -> None:
    from bulkmail.proxy import Proxy
    from bulkmail.servers.sandbox import SANDBOX_AWS, Sandbox
    from bulkmail.signing.sigv4 import AwsCredentials

    from .test_proxy import _signed

    async with Sandbox(quota=500) as sandbox:
        kw = {"endpoint": sandbox.url, "credentials": SANDBOX_AWS, "grace": 2}
        async with (
            Proxy(_config(tmp_path, valkey.url, "a"), **kw) as a,
            Proxy(_config(tmp_path, valkey.url, "b"), **kw) as b,
        ):
            mid = (await asyncio.to_thread(_send, a.url, 0, 1))[0]
            assert await until(lambda: len(sandbox.accepted) == 10, 10)
            assert a.queue is not None
            assert await until(lambda: a.queue.backlog == 0, 10)  # type: ignore[union-attr]
            status, body = await _signed(b.url, "GET", f"/bulkmail/v1/messages/{mid}")
            other = AwsCredentials(OTHER_ID, OTHER_SECRET)
            theirs, _ = await _signed(b.url, "GET", f"/bulkmail/v1/messages/{mid}", key=other)
            unknown, _ = await _signed(b.url, "GET", "/bulkmail/v1/messages/nope")
    assert status == 200 and theirs == 404 and unknown == 404
    doc = orjson.loads(body)
    assert doc["MessageId"] == mid
    assert [x["Email"] for x in doc["Recipients"]] == [f"m0-r{j}@x.org" for j in range(10)]
    upstream = {x.to[0]: x.message_id for x in sandbox.accepted}
    for x in doc["Recipients"]:
        assert x["Status"] == "sent" and x["UpstreamMessageId"] == upstream[x["Email"]]
        assert x["PossibleDuplicate"] is False and x["Attempts"] == 1


async def test_backlog_bound_answers_throttling(valkey: ValkeyServer, tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    async with running(tmp_path, rate="1", queue=valkey.url) as r:
        r.proxy.service.max_backlog = 3  # type: ignore[union-attr]
        ses = client("ses", r.url, attempts=1)
        await call(
            ses.send_email,
            Source="news@example.com",
            Destination={"ToAddresses": ["a@x.org", "b@x.org", "c@x.org"]},
            Message=SIMPLE,
        )
        with pytest.raises(ClientError) as info:
            await call(
                ses.send_email,
                Source="news@example.com",
                Destination={"ToAddresses": ["d@x.org", "e@x.org"]},  # 2 still queued + 2 > 3
                Message=SIMPLE,
            )
        assert info.value.response["Error"]["Code"] == "Throttling"


async def test_engine_starts_again_when_another_proxy_took_rows_over(
    valkey: ValkeyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bulkmail.errors import JournalError

    async with running(tmp_path, queue=valkey.url) as r:
        queue: Any = r.proxy.queue
        real = queue.mark_in_flight
        failed = []

        async def once(ids: Any) -> None:
            if not failed:  # as RedisBooks says when another proxy took the chunk meanwhile
                failed.append(list(ids))
                raise JournalError("campaign 'proxy:default': row 1 is in_flight")
            await real(ids)

        queue.mark_in_flight = once
        await call(
            client("sesv2", r.url).send_email,
            FromEmailAddress="news@example.com",
            Destination={"ToAddresses": ["a@x.org", "b@x.org", "c@x.org"]},
            Content={"Simple": SIMPLE},
        )
        assert await until(lambda: r.sandbox.stats["accepted"] >= 3, 15)
        assert await recorded(r, 3)
    assert failed and sorted(a.to[0] for a in r.sandbox.accepted) == ["a@x.org", "b@x.org",
                                                                      "c@x.org"]  # fmt: skip
    assert "starting the engine again" in caplog.text


async def test_a_proxy_restarted_on_its_port_takes_its_own_chunks_back_at_once(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    from bulkmail.proxy import Proxy, ProxyConfig
    from bulkmail.servers.sandbox import SANDBOX_AWS, Faults, Sandbox

    from ._proxy_helpers import ENV, write_config
    from .conftest import free_port

    path = write_config(tmp_path, rate="100", queue=f"{{url: '{valkey.url}', visibility: 600}}")
    path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{free_port()}"))
    config = ProxyConfig.from_file(path, environ=ENV)
    async with Sandbox(quota=100, faults=Faults(latency=0.03)) as sandbox:
        kw = {"endpoint": sandbox.url, "credentials": SANDBOX_AWS, "grace": 2}
        first = Proxy(config, **kw)
        await first.__aenter__()
        await asyncio.to_thread(_send, first.url, 0, 10)  # 100 recipients: a second's work
        assert await until(lambda: len(sandbox.accepted) >= 20, 10)
        await _crash(first)
        assert len(sandbox.accepted) < 100
        async with Proxy(config, **kw) as again:  # same host and port: same consumer
            everyone = {f"m{i}-r{j}@x.org" for i in range(10) for j in range(10)}
            # long before the 600 s visibility timeout would let anyone else take them
            assert await until(lambda: {x.to[0] for x in sandbox.accepted} >= everyone, 20)
            assert again.queue is not None
            assert await until(lambda: again.queue.backlog == 0, 10)  # type: ignore[union-attr]
            counts = await again.queue.counts()
    assert counts["sent"] == 100 and counts["in_flight"] == 0
    sent = collections.Counter(x.to[0] for x in sandbox.accepted)
    assert sum(sent.values()) - 100 <= counts["possible_duplicate"]


async def test_through_the_engine_a_reset_overtakes_another_clients_blast(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    async with running(tmp_path, quota=100, rate="100", queue=valkey.url, outbox=False) as r:
        blast = client("sesv2", r.url)
        await call(  # one request, 300 recipients of bulk: three seconds' worth at 100/s
            blast.send_bulk_email,
            FromEmailAddress="news@example.com",
            DefaultContent={"Template": {"TemplateName": "promo", "TemplateData": "{}"}},
            BulkEmailEntries=[
                {"Destination": {"ToAddresses": [f"b{i}-{j}@x.org" for j in range(30)]}}
                for i in range(10)
            ],
        )
        other = client("sesv2", r.url, key=OTHER_ID, secret=OTHER_SECRET)
        await call(
            other.send_email,
            FromEmailAddress="news@other.example",
            Destination={"ToAddresses": ["reset@x.org"]},
            Content={"Simple": SIMPLE},
        )
        assert await until(lambda: any(a.to[0] == "reset@x.org" for a in r.sandbox.accepted))
        order = [a.to[0] for a in r.sandbox.accepted]
    # Queued behind the whole blast it would be 301st; fair, it waits only for what the
    # engine already holds (its queue of 25, a chunk being handed out, up to 64 at the gate).
    assert order.index("reset@x.org") < 150, order.index("reset@x.org")


async def test_redis_away_refuses_accepts_then_the_proxy_carries_on(
    valkey: ValkeyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from botocore.exceptions import ClientError

    async with running(tmp_path, queue=valkey.url) as r:
        r.proxy.queue._accept_link.patience = 0.5  # type: ignore[union-attr]
        ses = client("sesv2", r.url, attempts=1)
        kw = {"FromEmailAddress": "news@example.com", "Content": {"Simple": SIMPLE}}
        await call(ses.send_email, Destination={"ToAddresses": ["before@x.org"]}, **kw)
        assert await until(lambda: r.sandbox.stats["accepted"] == 1, 10)
        await asyncio.to_thread(valkey.stop)
        with pytest.raises(ClientError) as info:
            await call(ses.send_email, Destination={"ToAddresses": ["lost@x.org"]}, **kw)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500  # SDKs retry
        await asyncio.to_thread(valkey.start)  # same port and folder: its AOF is read back
        await call(ses.send_email, Destination={"ToAddresses": ["after@x.org"]}, **kw)
        assert await until(lambda: r.sandbox.stats["accepted"] == 2, 20)
        assert await recorded(r, 2)
    assert sorted(a.to[0] for a in r.sandbox.accepted) == ["after@x.org", "before@x.org"]
    assert "Traceback" not in caplog.text and "unavailable" in caplog.text  # one line, said why
