"""The fleet's Redis link delivers every cancellation, even one the client library drops.

On Python 3.11 ``asyncio.wait_for`` — awaited inside redis-py's connection code — returns
its result and loses the caller's cancellation when both arrive together (CPython
gh-86296). A worker's heartbeat cancelled at that instant ran forever, and the worker
hung at exit. These tests reproduce that race deterministically with a step that behaves
as ``wait_for`` does, and once against a real server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bulkmail.fleet.link import Link
from tests.fleet_conftest import ValkeyServer


def _link() -> Link:
    return Link.from_url("redis://127.0.0.1:1/0")  # never connected: steps are injected


async def _swallowing_step(_client: Any) -> str:
    """Like ``wait_for`` in the race: the cancellation arrives and is dropped."""
    try:
        await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        return "a result instead of the cancellation"
    return "finished"


async def test_a_cancellation_the_step_swallowed_is_raised() -> None:
    link = _link()
    task = asyncio.create_task(link.call(_swallowing_step))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await link.close()


async def test_a_step_finished_without_cancellation_returns_its_result() -> None:
    link = _link()
    assert await link.call(_swallowing_step) == "finished"
    await link.close()


async def test_cleanup_after_a_cancellation_may_still_call_redis() -> None:
    """A task that caught its cancellation and records what it has (the engine's final
    flush after a second Ctrl-C) is not cancelled again by the link."""
    link = _link()
    calls: list[str] = []

    async def record(_client: Any) -> str:
        calls.append("recorded")
        return "ok"

    async def run() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return await link.call(record)
        return "not cancelled"

    task = asyncio.create_task(run())
    await asyncio.sleep(0.01)
    task.cancel()
    assert await task == "ok" and calls == ["recorded"]
    await link.close()


async def test_a_heartbeat_loop_cancelled_at_any_instant_ends(valkey: ValkeyServer) -> None:
    """Cancel a loop of real Redis calls at many points of its first call (connecting,
    loading a script): it always ends."""
    for step in range(40):
        link = Link.from_url(valkey.url)
        await link.call(lambda r: r.ping())

        async def beat(link: Link = link) -> None:
            while True:
                await link.call(lambda r: r.script_load("return 1"))
                await asyncio.sleep(0.01)

        task = asyncio.create_task(beat())
        await asyncio.sleep(step * 0.0002)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert done, f"the loop outlived its cancellation (cancelled after {step * 0.2} ms)"
        await link.close()


def test_a_bad_url_is_one_clear_line_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bulkmail.cli import main

    assert main(["status", "news", "--redis", "http://user:hunter2@127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bulkmail: invalid Redis URL:") and err.count("\n") == 1
    assert "hunter2" not in err and "Traceback" not in err


async def test_connections_name_bulkmail_to_the_server(valkey: ValkeyServer) -> None:
    """``CLIENT LIST`` shows which application a connection belongs to."""
    import bulkmail

    link = Link.from_url(valkey.url)
    listing = await link.call(lambda r: r.client_list())
    await link.close()
    names = {c.get("lib-name") for c in listing}
    assert f"redis-py(bulkmail_v{bulkmail.__version__})" in names


def test_commands_pack_to_the_same_bytes_as_redis_py() -> None:
    """The link packs with hiredis (C) instead of redis.asyncio's Python packer: same
    bytes for every kind of argument, command names of two words split as redis-py does,
    and redis-py's own error for what it cannot send."""
    from redis.asyncio.connection import Connection
    from redis.exceptions import DataError

    link = Link.from_url("redis://127.0.0.1:1/0")
    ours = link.client.connection_pool.connection_class()
    theirs = Connection()
    big = "x" * 10_000  # above redis-py's buffer cutoff: it sends such a value apart
    for args in [
        ("SCRIPT LOAD", "return 1"),
        (b"CONFIG GET", b"maxmemory"),
        ("EVALSHA", "a" * 40, 2, "k1", "k2", 0.1, -3, 1e20, "é", b"\x00\xff", big),
        ("SET", "k", memoryview(b"view")),
    ]:
        assert b"".join(ours.pack_command(*args)) == b"".join(
            bytes(part) for part in theirs.pack_command(*args)
        )
    with pytest.raises(DataError):
        ours.pack_command("SET", "k", True)
    with pytest.raises(DataError):
        ours.pack_command("SET", "k", None)


async def test_values_packed_by_hiredis_reach_the_server_intact(valkey: ValkeyServer) -> None:
    link = Link.from_url(valkey.url)
    values = {"text": "é ü 中", "nul": b"\x00\xff\r\n", "float": 0.1, "big": "y" * 100_000}
    await link.call(lambda r: r.hset("h", mapping=values))
    stored = await link.call(lambda r: r.hgetall("h"))
    await link.close()
    assert stored == {
        b"text": "é ü 中".encode(), b"nul": b"\x00\xff\r\n", b"float": b"0.1",
        b"big": b"y" * 100_000,
    }  # fmt: skip
