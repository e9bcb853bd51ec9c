"""``make bench``: bulkmail against boto3 and aiobotocore, in one run, against one sink.

    python -m benchmarks.run [--n 20000] [--repeats 2] [--only bulkmail,boto3,aiobotocore]
    python -m benchmarks.run pacing  [--rates 14,500,5000]  # quota held, ≥ 97 % reached
    python -m benchmarks.run latency [--rate 2000 --latency 0.08]
    python -m benchmarks.run memory  [--n 1000000]

Each client runs in its own process (``benchmarks.clients``) and reports its own wall time,
CPU and peak RSS; the sink runs in another and reports its CPU, so the table shows that the
sink was never the limit. Runs are interleaved (a, b, c, a, b, c) so drift on a shared
machine hits every client alike; the table shows the median of the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEXT = (
    "Hello {{ first_name }},\n\n"
    + "Spring has arrived in {{ city }} and so has our newsletter, with news you can use. " * 11
    + "\n\nYou receive this because you subscribed as {{ email }}.\n"
)
HTML = (
    "<html><body><h1>Hello {{ first_name }}</h1>"
    + "<p>Spring has arrived in <b>{{ city }}</b>, and so has our newsletter.</p>" * 12
    + "<p>You subscribed as {{ email }}.</p></body></html>"
)


def write_campaign(folder: Path, n: int, *, rate: float, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "list.csv").open("w") as fh:
        fh.write("email,first_name,city\n")
        for i in range(n):
            fh.write(f"reader{i:07d}@example.org,Reader{i},City{i % 97}\n")
    (folder / "body.txt").write_text(TEXT)
    (folder / "body.html").write_text(HTML)
    for stale in folder.glob("campaign.journal.sqlite*"):
        stale.unlink()
    path = folder / "campaign.yaml"
    path.write_text(
        "name: bench\nprovider: {name: ses, region: us-east-1}\n"
        f"rate: {rate}\n"
        'from: "News <news@example.com>"\nsubject: "Hi {{ first_name }}"\n'
        "text: {file: body.txt}\nhtml: {file: body.html}\nrecipients: list.csv\n" + extra
    )
    return path


@contextmanager
def sink(quota: float | None = None, latency: float = 0.0) -> Iterator[str]:
    cmd = [sys.executable, "-m", "benchmarks.sink", "--port", "0", "--latency", str(latency)]
    if quota:
        cmd += ["--quota", str(quota)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"sink did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def sink_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/_stats") as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def run_client(
    which: str, folder: Path, url: str, concurrency: int, *, keep_journal: bool = False
) -> dict[str, Any]:
    if not keep_journal:
        for stale in folder.glob("campaign.journal.sqlite*"):
            stale.unlink()
    before = sink_stats(url)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.clients",
            which,
            str(folder),
            url,
            "--concurrency",
            str(concurrency),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    after = sink_stats(url)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["sink_cpu_s"] = after["cpu_s"] - before["cpu_s"]
    result["throttled"] = after["throttled"] - before["throttled"]
    return result


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    clients = args.only.split(",")
    concurrency = {"bulkmail": 256, "boto3": 8, "aiobotocore": 64}
    rows: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
    with tempfile.TemporaryDirectory(prefix="bulkmail-bench-") as tmp, sink() as url:
        folder = Path(tmp)
        write_campaign(folder, args.n, rate=1_000_000)
        for repeat in range(args.repeats):
            for which in clients:
                result = run_client(which, folder, url, concurrency[which])
                rows[which].append(result)
                print(
                    f"  run {repeat + 1} {which:12s} {result['sent'] / result['wall_s']:8.0f}/s",
                    file=sys.stderr,
                )
    table = []
    for which in clients:
        runs = rows[which]
        rates = [r["sent"] / r["wall_s"] for r in runs]
        table.append(
            {
                "client": which,
                "sent": runs[0]["sent"],
                "sends_per_s": statistics.median(rates),
                "cpu_us_per_send": statistics.median(r["cpu_s"] / r["sent"] * 1e6 for r in runs),
                "peak_rss_mb": max(r["maxrss_mb"] for r in runs),
                "sink_cpu_us_per_send": statistics.median(
                    r["sink_cpu_s"] / r["sent"] * 1e6 for r in runs
                ),
            }
        )
    print_table(table, args.n)
    if args.chart:
        chart(table, Path(args.chart))
    return table


def print_table(table: list[dict[str, Any]], n: int) -> None:
    base = {row["client"]: row["sends_per_s"] for row in table}
    bm = base.get("bulkmail")
    print(f"\n{n} recipients, personalised ~2 KB text + HTML, SESv2 SendEmail, loopback sink\n")
    print("| client | sends/s | CPU µs/send | peak RSS MB | sink CPU µs/send | bulkmail × |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in table:
        ratio = f"{bm / row['sends_per_s']:.1f}×" if bm and row["client"] != "bulkmail" else "—"
        print(
            f"| {row['client']} | {row['sends_per_s']:,.0f} | {row['cpu_us_per_send']:,.0f} "
            f"| {row['peak_rss_mb']:.0f} | {row['sink_cpu_us_per_send']:.0f} | {ratio} |"
        )


def chart(table: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no chart)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh([r["client"] for r in table], [r["sends_per_s"] for r in table], color="#4a7")
    ax.set_xlabel("sends per second (higher is better)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"chart: {path}", file=sys.stderr)


def pacing(args: argparse.Namespace) -> None:
    print(
        "| rate R | recipients | wall s | wall rate/R | send-span rate/R | throttled "
        "| max in any 1 s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rate in [float(r) for r in args.rates.split(",")]:
        n = max(int(rate * args.seconds), 50)
        with tempfile.TemporaryDirectory() as tmp, sink(quota=rate) as url:
            folder = Path(tmp)
            write_campaign(folder, n, rate=rate)
            result = run_client("bulkmail", folder, url, 512)
            stats = sink_stats(url)
            achieved = result["sent"] / result["wall_s"]
            print(
                f"| {rate:g} | {n} | {result['wall_s']:.1f} | {achieved / rate:.3f} "
                f"| {result['span_rate'] / rate:.3f} | {stats['throttled']} "
                f"| {stats['max_window']} |",
                flush=True,
            )
            if stats["throttle_times"]:
                print(
                    f"  throttled at (s from first request): {stats['throttle_times']}",
                    file=sys.stderr,
                )


def latency(args: argparse.Namespace) -> None:
    n = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory() as tmp, sink(latency=args.latency) as url:
        folder = Path(tmp)
        write_campaign(folder, n, rate=args.rate)
        result = run_client("bulkmail", folder, url, 2048)
    achieved = result["sent"] / result["wall_s"]
    span = result["span_rate"]
    print(
        f"latency {args.latency * 1000:.0f} ms, rate {args.rate:g}: {result['sent']} sent in "
        f"{result['wall_s']:.1f}s = {achieved:,.0f}/s wall ({achieved / args.rate:.1%} of "
        f"rate); first-to-last send {span:,.0f}/s ({span / args.rate:.1%})"
    )


def resume(args: argparse.Namespace) -> None:
    """Stop a 1M campaign half way (daily_limit), then time the rerun to its first send."""
    with tempfile.TemporaryDirectory() as tmp, sink() as url:
        folder = Path(tmp)
        write_campaign(folder, args.n, rate=1_000_000, extra=f"daily_limit: {args.n // 2}\n")
        first = run_client("bulkmail", folder, url, 256, keep_journal=False)
        second = run_client("bulkmail", folder, url, 256, keep_journal=True)
    print(
        f"{args.n:,}-row list: first run sent {first['sent']:,} (first send after "
        f"{first['first_send_s']:.2f}s); resumed run reached its first new send after "
        f"{second['first_send_s']:.2f}s and sent {second['sent']:,} more "
        f"(peak RSS {max(first['maxrss_mb'], second['maxrss_mb']):.0f} MB)"
    )


def memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, sink() as url:
        folder = Path(tmp)
        write_campaign(folder, args.n, rate=1_000_000)
        started = time.perf_counter()
        result = run_client("bulkmail", folder, url, 256)
        print(
            f"{args.n:,} recipients: {result['sent']:,} sent in {result['wall_s']:.0f}s "
            f"({result['sent'] / result['wall_s']:,.0f}/s), peak RSS "
            f"{result['maxrss_mb']:.0f} MB, first send after {result['first_send_s']:.2f}s, "
            f"total {time.perf_counter() - started:.0f}s"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode",
        nargs="?",
        default="throughput",
        choices=["throughput", "pacing", "latency", "memory", "resume", "fleet"],
    )
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default="bulkmail,boto3,aiobotocore")
    parser.add_argument("--chart", default=None, help="write a PNG bar chart here")
    parser.add_argument("--rates", default="14,500,5000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--latency", type=float, default=0.08)
    args = parser.parse_args(argv)
    if args.mode == "fleet":  # 1, 2, 4 workers unpaced, then 4 workers at --rate
        from benchmarks import fleet

        fleet.main(["table", "--n", str(args.n)])
        fleet.main(["pacing", "--n", str(args.n), "--rate", str(args.rate)])
        return
    if args.mode == "throughput":
        throughput(args)
    elif args.mode == "pacing":
        pacing(args)
    elif args.mode == "latency":
        latency(args)
    else:
        if args.n == 20000:
            args.n = 1_000_000
        (memory if args.mode == "memory" else resume)(args)


if __name__ == "__main__":
    main()
