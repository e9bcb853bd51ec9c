"""The proxy's accept queue and config, without HTTP: fair hand-out, recovery, file errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bulkmail.books.base import RowOutcome
from bulkmail.errors import ConfigError
from bulkmail.proxy import ProxyConfig
from bulkmail.proxy.fanout import Envelope
from bulkmail.proxy.store import SqliteQueue

from ._proxy_helpers import ENV, write_config


def _envelope(n: int, tag: str) -> Envelope:
    return Envelope({"sender": "a@example.com", "subject": tag}, None,
                    [f"{tag}{i}@x.org" for i in range(n)])  # fmt: skip


async def _first_batch(queue: SqliteQueue) -> list[str]:
    batches = queue.batches()
    batch = await asyncio.wait_for(anext(batches), 5)
    await batches.aclose()  # type: ignore[attr-defined]
    return [row.email for row in batch.rows]


async def test_a_blast_does_not_starve_a_password_reset(tmp_path: Path) -> None:
    queue = await SqliteQueue.open(
        tmp_path / "j.sqlite", shares={"BLAST": 1, "RESET": 1}, batch_size=10
    )
    try:
        for _ in range(40):  # 2,000 recipients of bulk, accepted first
            await queue.accept("BLAST", "sesv2", [_envelope(50, "bulk")])
        await queue.accept("RESET", "sesv2", [_envelope(1, "reset")])
        await queue.accept("BLAST", "sesv2", [_envelope(1, "own-reset")])
        emails = await _first_batch(queue)
        assert len(emails) == 10
        assert "reset0@x.org" in emails[:2]  # the other client's reset goes out at once
        assert "own-reset0@x.org" in emails[:2]  # small messages ahead of the client's bulk
        assert queue.backlog == 2002
    finally:
        await queue.close()


async def test_shares_weight_the_hand_out(tmp_path: Path) -> None:
    queue = await SqliteQueue.open(tmp_path / "j.sqlite", shares={"A": 3, "B": 1}, batch_size=8)
    try:
        await queue.accept("A", "sesv2", [_envelope(20, "a")])
        await queue.accept("B", "sesv2", [_envelope(20, "b")])
        emails = await _first_batch(queue)
        assert sum(e.startswith("a") for e in emails) == 6
        assert sum(e.startswith("b") for e in emails) == 2
    finally:
        await queue.close()


async def test_in_flight_rows_come_back_flagged_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    queue = await SqliteQueue.open(path, shares={"A": 1}, batch_size=10)
    await queue.accept("A", "sesv2", [_envelope(3, "r")])
    batches = queue.batches()
    rows = (await anext(batches)).rows
    await batches.aclose()  # type: ignore[attr-defined]
    await queue.mark_in_flight([r.id for r in rows])
    await queue.record([RowOutcome(rows[0].id, "sent", message_id="up-1", attempts=1)])
    await queue.close()  # as if killed: two rows left in flight
    again = await SqliteQueue.open(path, shares={"A": 1}, batch_size=10)
    try:
        assert again.recovery.requeued == 2 and again.backlog == 2
        batches = again.batches()
        resumed = (await anext(batches)).rows
        await batches.aclose()  # type: ignore[attr-defined]
        assert [r.email for r in resumed] == ["r1@x.org", "r2@x.org"]
        assert all(r.possible_duplicate for r in resumed)
    finally:
        await again.close()


def test_config_errors_name_file_key_and_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, rate="-3", extra="queue: redis://127.0.0.1\n")
    with pytest.raises(ConfigError) as info:
        ProxyConfig.from_file(path, environ={})  # secrets not in the environment
    text = str(info.value)
    assert "proxy.yaml:10: key 'rate': must be a positive number" in text
    assert "proxy.yaml:13: key 'queue': give either journal: FILE or queue:" in text
    assert (
        "proxy.yaml:4: key 'clients[0].secret_env': environment variable PROXY_TEST_SECRET" in text
    )
    path.write_text(path.read_text().replace("secret_env: PROXY_TEST_OTHER", "secret: hunter2"))
    with pytest.raises(ConfigError) as info:
        ProxyConfig.from_file(path, environ=ENV)
    assert "looks like a credential" in str(info.value) and "hunter2" not in str(info.value)


def test_config_defaults(tmp_path: Path) -> None:
    config = ProxyConfig.from_file(write_config(tmp_path), environ=ENV)
    assert config.rate is None and config.listen == ("127.0.0.1", 0)
    assert [c.key.access_key_id for c in config.clients] == [
        "AKIDPROXYCLIENT0001",
        "AKIDPROXYCLIENT0002",
    ]
    assert "secret" not in repr(config.clients[0]).lower()
