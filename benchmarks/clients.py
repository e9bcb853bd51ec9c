"""One benchmark client run, in its own process, reporting its own wall, CPU and peak RSS.

    python -m benchmarks.clients bulkmail|boto3|aiobotocore DIR URL [--concurrency N]

DIR holds ``campaign.yaml``, ``list.csv``, ``body.txt`` and ``body.html`` (written by
``benchmarks.run``). Every client does the same work per recipient: render the personalised
text and HTML bodies with Jinja2 and send one SESv2 ``SendEmail`` with one recipient.
Prints one JSON line: ``{"client", "sent", "wall_s", "cpu_s", "maxrss_mb"}``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import jinja2

SENDER = "News <news@example.com>"


def _templates(folder: Path) -> tuple[jinja2.Template, jinja2.Template, jinja2.Template]:
    env = jinja2.Environment(autoescape=False)
    html_env = jinja2.Environment(autoescape=True)
    return (
        env.from_string("Hi {{ first_name }}"),
        env.from_string((folder / "body.txt").read_text()),
        html_env.from_string((folder / "body.html").read_text()),
    )


def _rows(folder: Path) -> Iterator[dict[str, str]]:
    with (folder / "list.csv").open(newline="") as fh:
        yield from csv.DictReader(fh)


def _request(templates: Any, row: dict[str, str]) -> dict[str, Any]:
    subject, text, html = templates
    return {
        "FromEmailAddress": SENDER,
        "Destination": {"ToAddresses": [row["email"]]},
        "Content": {
            "Simple": {
                "Subject": {"Data": subject.render(row), "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": text.render(row), "Charset": "UTF-8"},
                    "Html": {"Data": html.render(row), "Charset": "UTF-8"},
                },
            }
        },
    }


SPAN_RATE: dict[str, float] = {}


def run_bulkmail(folder: Path, url: str, concurrency: int) -> int:
    from bulkmail.cli import main

    out = io.StringIO()
    argv = [str(folder / "campaign.yaml"), "--endpoint", url, "--json", "--quiet"]
    if concurrency > 0:  # 0: the defaults, as a user who sets nothing gets them
        argv += ["--concurrency", str(concurrency)]
    with redirect_stdout(out):
        code = main(argv)
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    SPAN_RATE["rate"] = float(summary["rate_per_s"])  # first send to last send
    SPAN_RATE["first_send_s"] = float(summary.get("first_send_s") or -1)
    if code != 0:
        print(out.getvalue(), file=sys.stderr)
    return int(summary["sent_this_run"])


def run_boto3(folder: Path, url: str, concurrency: int) -> int:
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    client = boto3.client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url=url,
        config=Config(max_pool_connections=concurrency, retries={"max_attempts": 1}),
    )
    templates = _templates(folder)

    def one(row: dict[str, str]) -> int:
        client.send_email(**_request(templates, row))
        return 1

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(one, _rows(folder), chunksize=64))


def run_aiobotocore(folder: Path, url: str, concurrency: int) -> int:
    import aiobotocore.session
    from aiobotocore.config import AioConfig

    async def main() -> int:
        session = aiobotocore.session.get_session()
        templates = _templates(folder)
        sent = 0
        async with session.create_client(
            "sesv2",
            region_name="us-east-1",
            endpoint_url=url,
            config=AioConfig(max_pool_connections=concurrency, retries={"max_attempts": 1}),
        ) as client:
            gate = asyncio.Semaphore(concurrency)
            tasks: set[asyncio.Task[None]] = set()

            async def one(row: dict[str, str]) -> None:
                nonlocal sent
                try:
                    await client.send_email(**_request(templates, row))
                    sent += 1
                finally:
                    gate.release()

            for row in _rows(folder):
                await gate.acquire()
                task = asyncio.create_task(one(row))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        return sent

    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    except ImportError:  # pragma: no cover
        return asyncio.run(main())


CLIENTS = {"bulkmail": run_bulkmail, "boto3": run_boto3, "aiobotocore": run_aiobotocore}


def main() -> None:
    which, folder, url = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--concurrency" else 64
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDBENCHEXAMPLE")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench/secret/key/EXAMPLE")
    start_cpu = time.process_time()
    start = time.perf_counter()
    sent = CLIENTS[which](folder, url, concurrency)
    wall = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "client": which,
                "sent": sent,
                "wall_s": wall,
                "cpu_s": cpu,
                "maxrss_mb": maxrss_mb,
                "span_rate": SPAN_RATE.get("rate"),
                "first_send_s": SPAN_RATE.get("first_send_s"),
            }
        )
    )


if __name__ == "__main__":
    main()
