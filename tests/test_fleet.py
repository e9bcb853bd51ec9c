"""The fleet end to end in one process: enqueue into a real valkey-server, a worker sends to
the embedded sandbox, the results file has the local run's schema."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bulkmail.api import load_campaign
from bulkmail.books.base import RowOutcome
from bulkmail.errors import ConfigError, JournalError
from bulkmail.fleet.books import RedisBooks
from bulkmail.fleet.enqueue import enqueue_campaign
from bulkmail.fleet.intake import RedisIntake
from bulkmail.fleet.keys import CampaignKeys
from bulkmail.fleet.link import Link
from bulkmail.fleet.metrics import WorkerCollector
from bulkmail.fleet.status import campaign_status, export_results
from bulkmail.fleet.worker import WorkerOptions, WorkerState, run_worker
from bulkmail.intake.base import Batch
from bulkmail.servers.sandbox import SANDBOX_AWS, Sandbox
from tests.fleet_conftest import ValkeyServer


def write_campaign(folder: Path, n: int, *, name: str = "fleet-news", extra: str = "") -> Path:
    rows = ["email,first_name"]
    rows += [f"r{i}@example.com,R{i}" for i in range(n)]
    rows += ["r1@example.com,Again", "not-an-address,X", "gone@example.com,G"]
    (folder / "list.csv").write_text("\n".join(rows) + "\n")
    (folder / "suppress.txt").write_text("gone@example.com\n")
    path = folder / "campaign.yaml"
    path.write_text(
        f"name: {name}\nprovider: {{name: ses, region: us-east-1}}\nrate: 500\n"
        'from: "News <news@example.com>"\nsubject: "Hi {{ first_name }}"\n'
        "text: Hello {{ first_name }}\nrecipients: list.csv\nsuppress: suppress.txt\n" + extra
    )
    return path


async def _next(batches: AsyncIterator[Batch]) -> Batch:
    """The next batch, bounded: a reclaim that never comes fails the test instead of
    hanging the suite. (These tests once hung: a heartbeat whose cancellation was lost in
    ``asyncio.wait_for``; see tests/test_fleet_link.py.)"""
    return await asyncio.wait_for(anext(batches), 30)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SANDBOX_AWS.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SANDBOX_AWS.secret_access_key)


async def test_enqueue_twice_adds_nothing_twice(valkey: ValkeyServer, tmp_path: Path) -> None:
    campaign = load_campaign(write_campaign(tmp_path, 450))
    link = Link.from_url(valkey.url)
    try:
        first = await enqueue_campaign(link, campaign, chunk=100)
        second = await enqueue_campaign(link, campaign, chunk=100)
        counts = await RedisBooks(link, campaign.name).counts()
        length = await link.call(lambda r: r.xlen(CampaignKeys(campaign.name).stream))
        meta = await link.call(lambda r: r.hgetall(CampaignKeys(campaign.name).meta))
    finally:
        await link.close()
    assert first.enqueued == 450 and second.enqueued == 0
    assert second.resumed_after == first.through == 454
    assert counts["pending"] == 450 and counts["skipped"] == 3 and counts["total"] == 453
    assert length == 5  # 450 sendable rows in chunks of 100
    assert not any(b"SECRET" in v.upper() for v in meta.values())  # no credential stored


async def test_changed_campaign_is_refused(valkey: ValkeyServer, tmp_path: Path) -> None:
    path = write_campaign(tmp_path, 5)
    link = Link.from_url(valkey.url)
    try:
        await enqueue_campaign(link, load_campaign(path))
        path.write_text(path.read_text().replace("Hello", "Howdy"))
        with pytest.raises(ConfigError, match="other content"):
            await enqueue_campaign(link, load_campaign(path))
    finally:
        await link.close()


async def test_worker_sends_everyone_once_and_exports_results(
    valkey: ValkeyServer, tmp_path: Path, aws_env: None
) -> None:
    campaign = load_campaign(write_campaign(tmp_path, 300))
    link = Link.from_url(valkey.url)
    try:
        await enqueue_campaign(link, campaign, chunk=50)
        async with Sandbox() as sandbox:
            options = WorkerOptions(exit_when_done=True, endpoint=sandbox.url, visibility=3)
            state = WorkerState()
            summaries = await run_worker(link, options, asyncio.Event(), state)
            sent_to = Counter(a.to[0] for a in sandbox.accepted)
        status = await campaign_status(link, campaign.name)
        out = tmp_path / "results.jsonl"
        written = await export_results(link, campaign.name, out)
        ttl = await link.call(lambda r: r.ttl(CampaignKeys(campaign.name).state))
    finally:
        await link.close()
    assert summaries[campaign.name].counts["sent"] == 300
    assert len(sent_to) == 300 and set(sent_to.values()) == {1}
    assert status.counts["sent"] == 300 and status.counts["pending"] == 0
    assert written == 303
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert list(records[0]) == [
        "line", "email", "status", "message_id", "error_code", "error", "attempts",
        "possible_duplicate", "first_attempt_at", "finished_at",
    ]  # fmt: skip
    skipped = {r["email"]: r["error_code"] for r in records if r["status"] == "skipped"}
    assert skipped == {
        "r1@example.com": "duplicate",
        "not-an-address": "invalid_address",
        "gone@example.com": "suppressed",
    } or set(skipped.values()) >= {"duplicate", "suppressed"}
    assert all(r["message_id"] for r in records if r["status"] == "sent")
    assert 0 < ttl <= 7 * 86400  # a finished campaign expires
    registry = CollectorRegistry()
    registry.register(WorkerCollector(state))
    metrics = generate_latest(registry).decode()
    assert 'bulkmail_sent_total{campaign="fleet-news"} 300.0' in metrics
    assert "bulkmail_in_flight" in metrics and "bulkmail_rate" in metrics


async def test_reclaimed_chunk_flags_rows_that_were_in_flight(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    campaign = load_campaign(write_campaign(tmp_path, 10))
    link = Link.from_url(valkey.url)
    try:
        await enqueue_campaign(link, campaign, chunk=100)
        books = RedisBooks(link, campaign.name)
        dead = RedisIntake(link, campaign.name, consumer="dead", visibility=0.2, wait=False)
        batches = dead.batches()
        batch = await _next(batches)
        ids = [row.id for row in batch.rows]
        await books.mark_in_flight(ids[:3])  # three requests left, then the worker died
        await books.record([RowOutcome(ids[3], "sent", message_id="m", attempts=1)])
        await batches.aclose()
        await asyncio.sleep(0.3)
        alive = RedisIntake(link, campaign.name, consumer="alive", visibility=0.2, wait=False)
        taking = alive.batches()
        taken = await _next(taking)
        await taking.aclose()  # ends its heartbeat
        with pytest.raises(JournalError):
            await books.mark_in_flight([ids[3]])  # final rows are never handed out again
    finally:
        await link.close()
    assert taken.resumed and taken.token == batch.token
    flagged = {row.id for row in taken.rows if row.possible_duplicate}
    assert flagged == set(ids[:3])
    # Their one attempt counts: a row's attempts add up across workers, as across runs.
    assert {row.id: row.attempts for row in taken.rows if row.attempts} == dict.fromkeys(ids[:3], 1)
    assert {row.id for row in taken.rows} == set(ids) - {ids[3]}
    assert alive.requeued == 3


async def test_at_most_once_holds_reclaimed_in_flight_rows_uncertain(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    campaign = load_campaign(write_campaign(tmp_path, 4))
    link = Link.from_url(valkey.url)
    try:
        await enqueue_campaign(link, campaign, at_most_once=True)
        books = RedisBooks(link, campaign.name)
        dead = RedisIntake(
            link, campaign.name, consumer="dead", visibility=0.2, at_most_once=True, wait=False
        )
        batches = dead.batches()
        batch = await _next(batches)
        await books.mark_in_flight([batch.rows[0].id])
        await batches.aclose()
        await asyncio.sleep(0.3)
        alive = RedisIntake(
            link, campaign.name, consumer="alive", visibility=0.2, at_most_once=True
        )
        taking = alive.batches()
        taken = await _next(taking)
        await taking.aclose()  # ends its heartbeat
        counts = await books.counts()
    finally:
        await link.close()
    assert batch.rows[0].id not in {row.id for row in taken.rows}
    assert counts["uncertain"] == 1 and counts["possible_duplicate"] == 1
    assert alive.uncertain == 1


async def test_a_call_waits_for_redis_to_come_back(valkey: ValkeyServer) -> None:
    link = Link.from_url(valkey.url)
    link.max_backoff = 0.2
    try:
        await link.call(lambda r: r.set("k", "v"))
        valkey.stop()
        pending = asyncio.ensure_future(link.call(lambda r: r.get("k")))
        await asyncio.sleep(0.5)
        assert not pending.done()
        await asyncio.to_thread(valkey.start)
        value = await asyncio.wait_for(pending, 20)
    finally:
        await link.close()
    assert value == b"v" and link.retries >= 1


def test_cli_enqueue_refuses_a_bad_campaign_and_reports_counts(
    valkey: ValkeyServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bulkmail.cli import main

    path = write_campaign(tmp_path, 20)
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("subject:", "subjet:"))
    assert main(["enqueue", str(bad), "--redis", valkey.url]) == 2
    assert "subjet" in capsys.readouterr().err
    assert main(["status", "fleet-news", "--redis", valkey.url]) == 2  # nothing enqueued
    assert main(["enqueue", str(path), "--redis", valkey.url]) == 2  # an invalid address
    assert main(["enqueue", str(path), "--redis", valkey.url, "--allow-problems"]) == 0
    assert "fleet-news: enqueued 20" in capsys.readouterr().out
    assert main(["status", "fleet-news", "--redis", valkey.url, "--json"]) == 0
    status = orjson.loads(capsys.readouterr().out.splitlines()[-1])
    assert status["counts"]["pending"] == 20 and status["enqueued"] is True


def test_cli_enqueue_refuses_rows_with_problems(
    valkey: ValkeyServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bulkmail.cli import main

    path = write_campaign(tmp_path, 5)
    # A row whose name would put a line break into the Subject header: that row cannot be
    # rendered (a missing column is already a whole-campaign config error).
    with (tmp_path / "list.csv").open("a") as out:
        out.write('broken@example.com,"Ana\r\nBcc: everyone@example.com"\n')
    assert main(["enqueue", str(path), "--redis", valkey.url]) == 2
    assert "nothing enqueued" in capsys.readouterr().err


@pytest.mark.slow
async def test_a_drained_worker_hands_its_chunks_back_and_another_finishes(
    valkey: ValkeyServer, tmp_path: Path, aws_env: None
) -> None:
    path = write_campaign(tmp_path, 400)
    path.write_text(path.read_text().replace("rate: 500", "rate: 200"))
    campaign = load_campaign(path)
    link = Link.from_url(valkey.url)
    try:
        await enqueue_campaign(link, campaign, chunk=50)
        async with Sandbox() as sandbox:
            stop = asyncio.Event()
            options = WorkerOptions(endpoint=sandbox.url, visibility=30, consumer="first")
            first = asyncio.ensure_future(run_worker(link, options, stop))
            while len(sandbox.accepted) < 100:
                await asyncio.sleep(0.05)
            stop.set()  # SIGTERM: drain
            await asyncio.wait_for(first, 30)
            middle = await RedisBooks(link, campaign.name).counts()
            options = WorkerOptions(
                exit_when_done=True, endpoint=sandbox.url, visibility=30, consumer="second"
            )
            await asyncio.wait_for(run_worker(link, options, asyncio.Event()), 30)
            sent_to = Counter(a.to[0] for a in sandbox.accepted)
        counts = await RedisBooks(link, campaign.name).counts()
    finally:
        await link.close()
    assert middle["in_flight"] == 0 and 0 < middle["sent"] < 400
    assert counts["sent"] == 400 and len(sent_to) == 400 and set(sent_to.values()) == {1}


async def test_a_worker_that_lost_a_chunk_starts_over_and_still_sends(
    valkey: ValkeyServer, tmp_path: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JournalError (another worker took a chunk over meanwhile) restarts the run; the
    restarted run sends normally (it once reused the drained Sender, which handed every
    later row back unsent)."""
    campaign = load_campaign(write_campaign(tmp_path, 60))
    real = RedisBooks.mark_in_flight
    failures = []

    async def once_taken_over(self: RedisBooks, ids: list[int]) -> None:
        if not failures:
            failures.append(ids)
            raise JournalError("rows were taken over by another worker")
        await real(self, ids)

    monkeypatch.setattr(RedisBooks, "mark_in_flight", once_taken_over)
    link = Link.from_url(valkey.url)
    try:
        await enqueue_campaign(link, campaign, chunk=20)
        async with Sandbox() as sandbox:
            options = WorkerOptions(exit_when_done=True, endpoint=sandbox.url, visibility=0.5)
            summaries = await asyncio.wait_for(
                run_worker(link, options, asyncio.Event(), WorkerState()), 60
            )
            sent_to = Counter(a.to[0] for a in sandbox.accepted)
    finally:
        await link.close()
    assert failures
    assert summaries[campaign.name].counts["sent"] == 60
    assert len(sent_to) == 60 and set(sent_to.values()) == {1}


async def test_a_leaving_worker_tidies_the_group_and_keeps_what_is_held(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    """Consumers that hold nothing are deleted when a worker leaves (its own, a killed
    worker's whose chunks were all taken over); one still holding an entry is kept, so
    its entry can still be reclaimed."""
    campaign = load_campaign(write_campaign(tmp_path, 20))
    k = CampaignKeys(campaign.name)
    link = Link.from_url(valkey.url)

    async def consumers() -> dict[str, int]:
        info = await link.call(lambda r: r.xinfo_consumers(k.stream, "workers"))
        return {c["name"].decode(): c["pending"] for c in info}

    try:
        await enqueue_campaign(link, campaign, chunk=10)
        holder = RedisIntake(link, campaign.name, consumer="holder", wait=False)
        held = holder.batches()
        await _next(held)  # holds one chunk, never settles it
        await held.aclose()
        idle = RedisIntake(link, campaign.name, consumer="idle", wait=False)
        await link.call(lambda r: r.xgroup_createconsumer(k.stream, "workers", "killed-long-ago"))
        await link.call(lambda r: r.zadd(k.workers, {"leaver": 1e12, "idle": 1e12}))
        leaver = RedisIntake(link, campaign.name, consumer="leaver", wait=False)
        taking = leaver.batches()
        batch = await _next(taking)
        await taking.aclose()
        await leaver.settle(batch)
        assert set(await consumers()) == {"holder", "killed-long-ago", "leaver"}
        assert await leaver.leave() == 2
        left = await consumers()
        alive = await link.call(lambda r: r.zrange(k.workers, 0, -1))
        assert await idle.leave() == 0
    finally:
        await link.close()
    assert left == {"holder": 1}
    assert b"leaver" not in alive and b"idle" in alive  # (holder's heartbeat may be there)


async def test_a_finished_worker_leaves_no_consumer_behind(
    valkey: ValkeyServer, tmp_path: Path, aws_env: None
) -> None:
    campaign = load_campaign(write_campaign(tmp_path, 30))
    k = CampaignKeys(campaign.name)
    link = Link.from_url(valkey.url)
    try:
        await enqueue_campaign(link, campaign, chunk=10)
        async with Sandbox() as sandbox:
            options = WorkerOptions(exit_when_done=True, endpoint=sandbox.url, visibility=3)
            await asyncio.wait_for(run_worker(link, options, asyncio.Event()), 30)
        info = await link.call(lambda r: r.xinfo_consumers(k.stream, "workers"))
        alive = await link.call(lambda r: r.zcard(k.workers))
    finally:
        await link.close()
    assert info == [] and alive == 0
