"""``python -m benchmarks.run proxy``: the SES-API proxy's accept and delivery rates.

    python -m benchmarks.run proxy [--n 2000] [--rate 2000] [--recipients 5] [--concurrency 32]

A ``bulkmail proxy`` subprocess sends to the benchmark sink (its own process, never the
limit). The client pre-signs every SESv2 ``SendEmail`` request before the clock starts and
sends them over ``concurrency`` keep-alive connections, so the client is not the limit
either. Reported: accepted messages/s and p50/p99 accept latency (from the request's first
byte to its 200, the durable commit included), then delivered recipients/s (from the first
accept until the sink has every recipient).
"""

from __future__ import annotations

import argparse
import asyncio
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


async def _drive(port: int, requests: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    shares = [requests[i::concurrency] for i in range(concurrency)]
    started = time.perf_counter()
    await asyncio.gather(*(_client(port, share, latencies) for share in shares if share))
    return time.perf_counter() - started, latencies


def proxy_bench(args: argparse.Namespace) -> None:
    n, k = args.n if args.n != 20000 else 2000, args.recipients
    with tempfile.TemporaryDirectory() as tmp, sink(quota=args.rate) as url:
        port = _free_port()
        config = Path(tmp) / "proxy.yaml"
        config.write_text(
            f"listen: 127.0.0.1:{port}\nclients:\n  - access_key_id: {KEY.access_key_id}\n"
            "    secret_env: BENCH_SECRET\n    identities: [example.com]\n"
            f"provider: {{name: ses, region: us-east-1, endpoint: '{url}'}}\n"
            f"rate: {args.rate}\nmax_backlog: 10000000\n"
            "journal: proxy.journal.sqlite\nresults: proxy.results.jsonl\n"
        )
        env = {**os.environ, "BENCH_SECRET": KEY.secret_access_key, "PYTHONPATH": str(ROOT),
               "AWS_ACCESS_KEY_ID": "AKIABENCH", "AWS_SECRET_ACCESS_KEY": "bench"}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "bulkmail", "proxy", str(config)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait(port)
            requests = _requests(n, k, f"127.0.0.1:{port}")
            before = sink_stats(url)["accepted"]
            elapsed, latencies = asyncio.run(_drive(port, requests, args.concurrency))
            started = time.perf_counter() - elapsed
            while sink_stats(url)["accepted"] - before < n * k:
                if time.perf_counter() - started > 600:
                    raise RuntimeError("the proxy did not deliver everything in 10 minutes")
                time.sleep(0.05)
            delivered = time.perf_counter() - started
            throttled = sink_stats(url)["throttled"]
        finally:
            proc.terminate()
            proc.wait(30)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    p50 = statistics.median(latencies) * 1000
    print(
        f"proxy: {n} messages x {k} recipients, {args.concurrency} connections, "
        f"rate {args.rate}/s\n"
        f"  accepted  {n / elapsed:8.0f} messages/s   p50 {p50:.1f} ms   p99 {p99:.1f} ms\n"
        f"  delivered {n * k / delivered:8.0f} recipients/s  ({n * k} in {delivered:.1f} s, "
        f"{throttled} throttled by the sink)"
    )


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


__all__ = ["add_arguments", "proxy_bench"]
