"""Never lose a recipient, never repeat one silently — under faults, kills and restarts.

The sandbox records what it accepted; every scenario asserts that each recipient was
accepted at least once and that any recipient accepted more than once is one the engine
itself flagged ``possible_duplicate``.
"""

from __future__ import annotations

import asyncio
import collections
import email
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from bulkmail import RetryPolicy, Sender, SesProvider, run_campaign
from bulkmail.api import load_campaign
from bulkmail.servers.sandbox import SANDBOX_AWS, Faults, Sandbox

from .conftest import CampaignFactory, free_port


def results(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def assert_exactly_once_or_flagged(accepted: Iterable[str], rows: list[dict[str, Any]]) -> None:
    counts = collections.Counter(accepted)
    expected = {r["email"] for r in rows if r["status"] != "skipped"}
    missing = expected - set(counts)
    assert not missing, f"{len(missing)} recipients never accepted, e.g. {sorted(missing)[:3]}"
    flagged = {r["email"] for r in rows if r["possible_duplicate"]}
    unflagged = {a for a, n in counts.items() if n > 1 and a not in flagged}
    assert not unflagged, f"unflagged duplicates: {sorted(unflagged)[:5]}"
    assert all(r["status"] == "sent" for r in rows if r["status"] != "skipped")


FAULTS = {
    "500": Faults(seed=1, error_500=0.05),
    "503": Faults(seed=2, error_503=0.05),
    "reset_before": Faults(seed=3, reset_before=0.05),
    "lost_after_accept": Faults(seed=4, lost_after_accept=0.05),
    "slow": Faults(seed=5, slow=0.05, slow_seconds=0.6),
    "everything": Faults(
        seed=6,
        error_500=0.01,
        error_503=0.01,
        reset_before=0.01,
        lost_after_accept=0.01,
        slow=0.01,
        slow_seconds=0.6,
    ),
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
async def test_faults_never_lose_or_silently_repeat(
    kind: str, make_campaign: CampaignFactory
) -> None:
    n = 1500
    quota = 800 if kind == "everything" else None
    async with Sandbox(faults=FAULTS[kind], quota=quota) as sandbox:
        path = make_campaign(
            count=n,
            domain=f"{kind.replace('_', '-')}.example.org",
            rate=1000,
            extra="max_attempts: 8\n",
        )
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url, timeout=0.4)
        summary = await run_campaign(path, provider=provider)
        accepted = [to for a in sandbox.accepted for to in a.to]
    rows = results(summary.results)
    assert summary.counts["sent"] == n, summary.counts
    assert_exactly_once_or_flagged(accepted, rows)
    if kind in ("lost_after_accept", "slow"):
        assert summary.counts["possible_duplicate"] > 0  # the scenario really happened
    if kind in ("500", "503", "reset_before"):
        assert len(accepted) == n  # not accepted means safe to retry: no duplicates at all


async def test_throttling_quota_slows_down_instead_of_failing(
    make_campaign: CampaignFactory,
) -> None:
    # The campaign claims 400/s but the account allows 150/s: a wrong rate costs a few
    # retries, not failures, and everyone is still sent exactly once.
    async with Sandbox(quota=150) as sandbox:
        path = make_campaign(count=600, domain="throttle.example.org", rate=400)
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        summary = await run_campaign(path, provider=provider)
        accepted = [to for a in sandbox.accepted for to in a.to]
        throttled = sandbox.stats["throttled"]
    assert summary.counts["sent"] == 600 and summary.counts["failed"] == 0
    assert sorted(accepted) == sorted(set(accepted)) and len(accepted) == 600
    assert 0 < throttled < 600  # adaptive slow-down: far fewer throttles than messages


async def test_daily_quota_pauses_and_resumes(make_campaign: CampaignFactory) -> None:
    path = make_campaign(count=50, domain="daily.example.org", rate=500)
    async with Sandbox(daily_quota=20) as sandbox:
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        first = await run_campaign(path, provider=provider)
        assert first.stop_kind == "quota"
        assert first.counts["sent"] == 20 and first.counts["failed"] == 0
        assert first.counts["pending"] == 30
        assert sandbox.stats["accepted"] == 20
    async with Sandbox() as sandbox:  # a new day
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        second = await run_campaign(path, provider=provider)
        assert second.counts["sent"] == 50 and second.sent_this_run == 30
        assert len(sandbox.accepted) == 30


async def test_fatal_answer_stops_at_once_and_keeps_state(
    make_campaign: CampaignFactory,
) -> None:
    path = make_campaign(count=200, domain="fatal.example.org", rate=1000)
    async with Sandbox() as sandbox:
        wrong = type(SANDBOX_AWS)(SANDBOX_AWS.access_key_id, "the-wrong-secret-value")
        summary = await run_campaign(
            path, provider=SesProvider(credentials=wrong, endpoint=sandbox.url)
        )
        assert summary.stop_kind == "fatal" and "SignatureDoesNotMatch" in (summary.stopped or "")
        assert summary.counts["sent"] == 0 and summary.counts["failed"] == 0
        # Only the few requests already under way reached the server, not 200 of them.
        assert sandbox.stats["signature_failures"] < 50
    text = Path(summary.results).read_text() + Path(summary.journal).read_bytes().decode("latin-1")
    assert "the-wrong-secret-value" not in text


async def test_at_most_once_holds_ambiguous_recipients(make_campaign: CampaignFactory) -> None:
    path = make_campaign(count=300, domain="amo.example.org", rate=1000)
    async with Sandbox(faults=Faults(seed=9, lost_after_accept=0.05)) as sandbox:
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        summary = await run_campaign(path, provider=provider, at_most_once=True)
        accepted = [to for a in sandbox.accepted for to in a.to]
    assert summary.counts["uncertain"] > 0
    assert len(accepted) == len(set(accepted))  # nobody received it twice
    rows = results(summary.results)
    assert {r["status"] for r in rows} == {"sent", "uncertain"}


def _outbox_recipients(outbox: Path) -> list[str]:
    found = []
    for path in outbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes())
        found.append(str(message["To"]))
    return found


@pytest.fixture
def sandbox_process(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    outbox = tmp_path / "outbox"
    port = free_port()
    extra: list[str] = list(getattr(request, "param", []))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bulkmail",
            "sandbox",
            "--port",
            str(port),
            "--outbox",
            str(outbox),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import socket

    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.05)
    yield url, outbox
    proc.terminate()
    proc.wait(timeout=10)


def _cli(path: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=SANDBOX_AWS.access_key_id,
        AWS_SECRET_ACCESS_KEY=SANDBOX_AWS.secret_access_key,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "bulkmail", str(path), "--endpoint", url, "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_progress(path: Path, outbox: Path, at_least: int, proc: Any) -> None:
    deadline = time.monotonic() + 30
    while len(list(outbox.glob("*.eml"))) < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_mid_campaign_then_rerun(
    sandbox_process: Any, make_campaign: CampaignFactory, seed: int
) -> None:
    url, outbox = sandbox_process
    n = 1500
    path = make_campaign(count=n, domain=f"kill{seed}.example.org", rate=600)
    proc = _cli(path, url)
    _wait_for_progress(path, outbox, random.Random(seed).randint(50, 600), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert len(list(outbox.glob("*.eml"))) < n  # it really died mid-campaign
    rerun = _cli(path, url)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert "Traceback" not in err
    rows = results(load_campaign(path).results)
    assert_exactly_once_or_flagged(_outbox_recipients(outbox), rows)


def test_ctrl_c_drains_then_resume_sends_the_rest_once(
    sandbox_process: Any, make_campaign: CampaignFactory
) -> None:
    url, outbox = sandbox_process
    n = 1200
    path = make_campaign(count=n, domain="sigint.example.org", rate=400)
    proc = _cli(path, url)
    _wait_for_progress(path, outbox, 100, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "resume" in err.lower() and str(path) in err
    assert "Traceback" not in err
    partial = results(load_campaign(path).results)
    assert 0 < sum(r["status"] == "sent" for r in partial) < n
    rerun = _cli(path, url)
    _, err2 = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err2
    got = _outbox_recipients(outbox)
    assert len(got) == n and len(set(got)) == n  # a graceful stop leaves nothing ambiguous


async def test_sender_api_against_sandbox_with_faults() -> None:
    async with Sandbox(faults=Faults(seed=3, error_503=0.2)) as sandbox:
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        async with Sender(provider, rate=500, retry=RetryPolicy(base=0.01)) as sender:
            from bulkmail import Message

            deliveries = [
                await sender.send(
                    Message(
                        to=f"s{i}@api.example.org", sender="n@example.com", subject="s", text="t"
                    )
                )
                for i in range(40)
            ]
        assert all(d.ok for d in deliveries)
        assert len(sandbox.accepted) == 40
        assert sandbox.stats["errors_injected"] > 0


async def test_rate_auto_reads_the_quota_and_stays_within_the_day(
    make_campaign: CampaignFactory,
) -> None:
    # The account allows 80/s and 30 more today: rate auto paces to 80/s with no throttle,
    # and the run pauses at 30 (resumable) instead of hitting the daily error.
    path = make_campaign(count=50, domain="auto.example.org", rate="auto")
    async with Sandbox(quota=80, daily_quota=30) as sandbox:
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        summary = await run_campaign(path, provider=provider)
        assert sandbox.stats["throttled"] == 0
        assert sandbox.stats["accepted"] == 30
    assert summary.stop_kind == "quota" and summary.counts["sent"] == 30
    assert summary.counts["pending"] == 20
    assert 0 < summary.rate <= 80 * 1.1  # 30 sends: the start-up burst shows; no throttle


@pytest.mark.parametrize("sandbox_process", [["--latency", "1"]], indirect=True)  # long drain
def test_second_ctrl_c_quits_at_once_and_the_journal_stays_consistent(
    sandbox_process: Any, make_campaign: CampaignFactory
) -> None:
    url, outbox = sandbox_process
    n = 1500
    path = make_campaign(count=n, domain="twice.example.org", rate=300)
    proc = _cli(path, url)
    _wait_for_progress(path, outbox, 100, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # the drain waits for answers that take a second
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "quit at once" in err and "Traceback" not in err
    rerun = _cli(path, url)
    _, err2 = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err2
    rows = results(load_campaign(path).results)
    assert_exactly_once_or_flagged(_outbox_recipients(outbox), rows)


@pytest.mark.parametrize(
    "sandbox_process", [["--faults", "0.05", "--quota", "1500", "--seed", "7"]], indirect=True
)
def test_20k_under_faults_and_throttling_then_sigkill_and_rerun(
    sandbox_process: Any, make_campaign: CampaignFactory
) -> None:
    """The issue's done-when: 20,000 recipients, 5 % faults of every kind (500, 503, reset,
    lost answer, slow answer) plus a throttling quota below the campaign's rate, SIGKILL at a
    random moment, rerun: nobody missing, duplicates only among flagged recipients."""
    url, outbox = sandbox_process
    n = 20_000
    path = make_campaign(count=n, domain="storm.example.org", rate=2000, extra="max_attempts: 10\n")
    proc = _cli(path, url)
    _wait_for_progress(path, outbox, random.Random(20).randint(2000, 8000), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    rerun = _cli(path, url, "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["counts"]["sent"] == n
    rows = results(load_campaign(path).results)
    assert_exactly_once_or_flagged(_outbox_recipients(outbox), rows)


def test_rate_auto_with_a_bad_key_exits_2_without_a_traceback(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from bulkmail.cli import main

    async def serve() -> tuple[Sandbox, str]:
        sandbox = Sandbox()
        await sandbox.start()
        return sandbox, sandbox.url

    loop = asyncio.new_event_loop()
    import threading

    sandbox, url = loop.run_until_complete(serve())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        path = make_campaign(count=3, rate="auto", provider=f"name: ses\n  endpoint: {url}")
        os.environ["AWS_ACCESS_KEY_ID"] = SANDBOX_AWS.access_key_id
        os.environ["AWS_SECRET_ACCESS_KEY"] = "a-wrong-secret-for-the-quota"
        try:
            code = main([str(path)])
        finally:
            del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
        out, err = capsys.readouterr()
        assert code == 2 and "quota" in err and "SignatureDoesNotMatch" in err
        assert "Traceback" not in err and "a-wrong-secret-for-the-quota" not in out + err
    finally:
        asyncio.run_coroutine_threadsafe(sandbox.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def test_a_provider_stop_while_the_reader_finds_nothing_new_does_not_hang(
    make_campaign: CampaignFactory,
) -> None:
    # 20 real recipients, then thousands of duplicates: the daily quota stops the campaign
    # while the reader is busy with rows that add nothing. run() must still return.
    rows = [f"u{i}@dup.example.org,N" for i in range(20)]
    rows += [f"u{i % 20}@dup.example.org,again" for i in range(20_000)]
    path = make_campaign(rows=rows, rate=1000)
    async with Sandbox(daily_quota=10) as sandbox:
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        summary = await asyncio.wait_for(run_campaign(path, provider=provider), timeout=60)
    assert summary.stop_kind == "quota" and summary.counts["sent"] == 10


async def test_the_suppression_file_is_read_again_on_every_run(
    make_campaign: CampaignFactory,
) -> None:
    path = make_campaign(
        count=30,
        domain="unsub.example.org",
        rate=1000,
        extra="suppress: suppressed.txt\ndaily_limit: 10\n",
    )
    suppressed = path.parent / "suppressed.txt"
    suppressed.write_text("user000000@unsub.example.org\n")
    async with Sandbox() as sandbox:
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        first = await run_campaign(path, provider=provider)
        assert first.counts["sent"] == 10
        # Two people unsubscribe between the runs: no --force needed, and never mailed.
        suppressed.write_text(
            "user000000@unsub.example.org\nUSER000020@unsub.example.org\n"
            "user000025@unsub.example.org\n"
        )
        second = await run_campaign(path, provider=provider, overrides=None)
        got = [to for a in sandbox.accepted for to in a.to]
    assert "user000020@unsub.example.org" not in got
    assert "user000025@unsub.example.org" not in got
    assert second.counts["skipped"] == 3 and second.counts["sent"] == 20  # 10 per run


def test_force_refuses_an_edited_list(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from bulkmail.cli import main

    path = make_campaign(count=5, extra="daily_limit: 2\n")
    assert main([str(path)]) == 1  # paused by the daily limit
    listing = path.parent / "list.csv"
    lines = listing.read_text().splitlines()
    listing.write_text("\n".join([lines[0], *lines[2:]]) + "\n")  # a row removed above
    capsys.readouterr()
    assert main([str(path), "--force"]) == 2
    err = capsys.readouterr().err
    assert "recipient list changed" in err and "--restart" in err


def test_an_unwritable_results_path_is_a_clear_error(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from bulkmail.cli import main

    path = make_campaign(count=2)
    code = main([str(path), "--results", "/proc/no-such-dir/results.jsonl"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err and "results" in err
