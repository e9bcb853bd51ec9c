"""DirectMail ``mode: batch`` is durable before each call: a real CLI killed during a slow
``BatchSendMail`` (SIGKILL, or a second Ctrl-C) never has that list sent again by a rerun.

The sandbox queues the list *before* its ``--latency`` delay, so the test kills the CLI
after the sandbox accepted the call and before the answer came back: the worst moment.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkmail.servers.sandbox import SANDBOX_ALIBABA, Faults, Sandbox

LATENCY = 2.0


def write_campaign(folder: Path) -> Path:
    (folder / "list.csv").write_text("email\nunused@example.org\n", encoding="utf-8")
    path = folder / "batch.yaml"
    path.write_text(
        "name: spring-batch\n"
        "provider:\n  name: directmail\n  region: cn-hangzhou\n"
        "directmail:\n  mode: batch\n  template_name: spring-news\n  receivers_name: spring\n"
        "rate: 1\n"
        'from: "News <news@example.com>"\n'
        "recipients: list.csv\n",
        encoding="utf-8",
    )
    return path


async def start_cli(path: Path, url: str) -> asyncio.subprocess.Process:
    env = dict(
        os.environ,
        ALIBABA_CLOUD_ACCESS_KEY_ID=SANDBOX_ALIBABA.access_key_id,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=SANDBOX_ALIBABA.access_key_secret,
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkmail",
        str(path),
        "--endpoint",
        url,
        "--quiet",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def wait_until_queued(server: Sandbox, proc: asyncio.subprocess.Process) -> None:
    """Until the sandbox has queued the list (its answer is still ``LATENCY`` away)."""
    async with asyncio.timeout(30):
        while server.stats["accepted"] < 1:
            assert proc.returncode is None, await proc.communicate()
            await asyncio.sleep(0.01)


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


async def rerun(path: Path, server: Sandbox) -> tuple[int, str]:
    again = await start_cli(path, server.url)
    _, err = await again.communicate()
    assert b"Traceback" not in err, err
    return again.returncode or 0, err.decode()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigkill", "second-ctrl-c"])
async def test_killed_during_batchsendmail_the_list_is_never_sent_again(
    tmp_path: Path, how: str
) -> None:
    path = write_campaign(tmp_path)
    results = tmp_path / "batch.results.jsonl"
    async with Sandbox(faults=Faults(latency=LATENCY)) as server:
        proc = await start_cli(path, server.url)
        await wait_until_queued(server, proc)
        if how == "sigkill":
            proc.send_signal(signal.SIGKILL)
            await proc.communicate()
            assert proc.returncode == -signal.SIGKILL
        else:
            proc.send_signal(signal.SIGINT)
            await asyncio.sleep(0.2)  # the first Ctrl-C waits for the call in flight
            proc.send_signal(signal.SIGINT)
            _, err = await proc.communicate()
            assert proc.returncode == 130, err
            # The second Ctrl-C settles the call itself before quitting.
            [line] = lines(results)
            assert line["status"] == "uncertain" and line["error_code"] == "interrupted"

        code, err = await rerun(path, server)
        assert server.stats["accepted"] == 1, "the rerun sent the whole list again"
        got = lines(results)
        assert [(g["receivers_name"], g["status"], g["error_code"]) for g in got] == [
            ("spring", "uncertain", "interrupted")
        ]
        assert "may have been sent" in got[0]["error"]
        if how == "sigkill":  # this rerun settled the call: not everyone is known sent
            assert code == 1, err

        # And a third run still does not send it (the uncertain line is the list's last).
        await rerun(path, server)
        assert server.stats["accepted"] == 1 and len(lines(results)) == 1
    assert not (tmp_path / "batch.results.jsonl.in-flight").exists()


async def test_a_call_answered_before_the_kill_is_not_made_uncertain(tmp_path: Path) -> None:
    """The in-flight file outlives its outcome line only if the run died in between: the
    rerun sees the outcome and leaves the list as sent."""
    path = write_campaign(tmp_path)
    results = tmp_path / "batch.results.jsonl"
    async with Sandbox() as server:
        code, err = await rerun(path, server)
        assert code == 0, err
        [sent] = lines(results)
        # Simulate a death between the outcome line and the removal of the in-flight file.
        marker = tmp_path / "batch.results.jsonl.in-flight"
        marker.write_bytes(orjson.dumps({**sent, "status": "in_flight", "env_id": None}))
        code, err = await rerun(path, server)
        assert code == 0, err
        assert server.stats["accepted"] == 1
        assert lines(results) == [sent] and not marker.exists()
