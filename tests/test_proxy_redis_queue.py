"""The proxy's Redis queue without HTTP: the weighted hand-out, giving chunks back, and the
``queue:`` configuration (a real valkey-server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.fleet_conftest import ValkeyServer

from ._proxy_helpers import until


def _envelope(n: int, tag: str) -> Any:
    from bulkmail.proxy.fanout import Envelope

    return Envelope({"sender": "a@example.com", "subject": tag}, None,
                    [f"{tag}{i}@x.org" for i in range(n)])  # fmt: skip


async def test_a_blast_does_not_starve_a_password_reset(valkey: ValkeyServer) -> None:
    from bulkmail.proxy.redis_queue import RedisQueue

    queue = await RedisQueue.open(valkey.url, shares={"BLAST": 1, "RESET": 1}, batch_size=10)
    try:
        for _ in range(40):  # 2,000 recipients of bulk, accepted first
            await queue.accept("BLAST", "sesv2", [_envelope(50, "bulk")])
        await queue.accept("RESET", "sesv2", [_envelope(1, "reset")])
        await queue.accept("BLAST", "sesv2", [_envelope(1, "own-reset")])
        assert queue.backlog == 2002
        batches = queue.batches()
        first = [await asyncio.wait_for(anext(batches), 10) for _ in range(3)]
        await batches.aclose()  # type: ignore[attr-defined]
    finally:
        await queue.close()
    emails = [row.email for batch in first for row in batch.rows]
    # Handed out as lanes come in: at most one bulk chunk may go before the other lanes
    # are read, then the other client's reset and the blaster's own small message.
    assert "reset0@x.org" in emails and "own-reset0@x.org" in emails
    assert sum(e.startswith("bulk") for e in emails) <= 10
    assert all(row.fields["spec"]["sender"] == "a@example.com" for b in first for row in b.rows)


async def test_shares_weight_the_hand_out(valkey: ValkeyServer) -> None:
    from bulkmail.proxy.redis_queue import RedisQueue

    queue = await RedisQueue.open(valkey.url, shares={"A": 3, "B": 1}, batch_size=5)
    taken: list[str] = []
    try:
        for _ in range(10):
            await queue.accept("A", "sesv2", [_envelope(10, "a")])
            await queue.accept("B", "sesv2", [_envelope(10, "b")])
        batches = queue.batches()
        bulk = [lane for lane in queue.lanes.lanes if lane.intake.lane == 1]
        for i in range(9):
            # Once both bulk lanes have a chunk read ahead the choice is the policy's (the
            # first goes to whichever lane is read first: 9 picks total 7:2 either way).
            if i:
                assert await until(lambda: all(lane.ready is not None for lane in bulk), 10)
            batch = await asyncio.wait_for(anext(batches), 10)
            taken.append(batch.rows[0].email[0])
        await batches.aclose()  # type: ignore[attr-defined]
    finally:
        await queue.close()
    assert taken.count("a") == 7 and taken.count("b") == 2


async def test_a_closed_queue_gives_its_chunks_back_at_once(valkey: ValkeyServer) -> None:
    from bulkmail.proxy.redis_queue import RedisQueue

    first = await RedisQueue.open(valkey.url, shares={"A": 1}, batch_size=5, visibility=600)
    await first.accept("A", "sesv2", [_envelope(3, "x")])
    batches = first.batches()
    batch = await asyncio.wait_for(anext(batches), 10)
    await batches.aclose()  # type: ignore[attr-defined]
    await first.close()  # drained: what it held is given back, not left for the timeout
    second = await RedisQueue.open(valkey.url, shares={"A": 1}, batch_size=5, visibility=600)
    try:
        batches = second.batches()
        again = await asyncio.wait_for(anext(batches), 10)
        await batches.aclose()  # type: ignore[attr-defined]
    finally:
        await second.close()
    assert again.token == batch.token and again.resumed
    assert [r.email for r in again.rows] == ["x0@x.org", "x1@x.org", "x2@x.org"]
    assert not any(r.possible_duplicate for r in again.rows)  # never marked in flight


@pytest.mark.parametrize(
    ("queue", "extra", "message"),
    [
        ("http://127.0.0.1:6379", "", "must be a Redis URL"),
        ("redis://user:hunter2secret@127.0.0.1:notaport/0", "", "port"),
        ("redis://127.0.0.1:6379/zero", "", "database must be a number"),
        ("redis://127.0.0.1:6379/0", "journal: j.sqlite\n", "not both"),
        ("{url: 'redis://127.0.0.1', password_env: NOPE_NOT_SET}", "", "NOPE_NOT_SET is not set"),
        ("{url: 'redis://127.0.0.1', visibility: -1}", "", "positive number of seconds"),
        ("{url: 'redis://127.0.0.1', nmae: x}", "", "did you mean 'name'"),
    ],
)
def test_queue_config_errors_name_file_key_and_line(
    tmp_path: Path, queue: str, extra: str, message: str
) -> None:
    from bulkmail.errors import ConfigError
    from bulkmail.proxy import ProxyConfig

    from ._proxy_helpers import ENV, write_config

    path = write_config(tmp_path, queue=queue, extra=extra)
    with pytest.raises(ConfigError) as info:
        ProxyConfig.from_file(path, environ=ENV)
    text = str(info.value)
    assert message in text and "proxy.yaml:11" in text and "queue" in text
    assert "hunter2secret" not in text


def test_queue_config_forms(tmp_path: Path) -> None:
    from bulkmail.proxy import ProxyConfig

    from ._proxy_helpers import ENV, write_config

    url = "rediss://proxy:pa%2Fss@redis.example:6380/2"
    plain = ProxyConfig.from_file(write_config(tmp_path, queue=url), environ=ENV)
    assert plain.queue is not None and plain.queue.url == url and plain.queue.name == "default"
    assert "pa%2Fss" not in repr(plain.queue) and "pa%2Fss" not in plain.queue.display
    form = "{url: 'redis://proxy@127.0.0.1:6379/0', password_env: RP, name: eu, visibility: 5}"
    env = {**ENV, "RP": "s/cr@t"}
    config = ProxyConfig.from_file(write_config(tmp_path, queue=form), environ=env)
    assert config.queue is not None
    assert config.queue.url == "redis://proxy:s%2Fcr%40t@127.0.0.1:6379/0"
    assert (config.queue.name, config.queue.visibility) == ("eu", 5.0)
