"""``make bench``: bulkmail against boto3 and aiobotocore, in one run, against one sink.

    python -m benchmarks.run [--n 20000] [--repeats 2] [--only bulkmail,boto3,aiobotocore]
    python -m benchmarks.run pacing  [--rates 14,500,5000]  # quota held, ≥ 97 % reached
    python -m benchmarks.run latency [--rate 2000 --latency 0.08]
    python -m benchmarks.run memory  [--n 1000000]
    python -m benchmarks.run proxy   [--n 2000 --rate 2000 --recipients 5]  # benchmarks/proxy.py

Each client runs in its own process (``benchmarks.clients``) and reports its own wall time,
CPU and peak RSS; the sink runs in another and reports its CPU, so the table shows that the
sink was never the limit. Runs are interleaved (a, b, c, a, b, c) so drift on a shared
machine hits every client alike; the table shows the median of the repeats.
"""

from __future__ import annotations

import argparse
import compileall
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


def write_template_campaign(folder: Path, n: int, *, bulk: bool) -> Path:
    """The same list through an SES stored template: SendBulkEmail (``bulk``) or SendEmail."""
    path = write_campaign(folder, n, rate=1_000_000)
    text = path.read_text()
    text = text.replace('subject: "Hi {{ first_name }}"\n', "")
    text = text.replace("text: {file: body.txt}\nhtml: {file: body.html}\n", "")
    path.write_text(text + f"template: {{name: newsletter}}\nbulk: {str(bulk).lower()}\n")
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


def byte_compile(tree: Path) -> None:
    """Write the ``.pyc`` files of ``tree``'s package, as pip does when it installs one.

    The clients it is compared with are installed, byte-compiled; a source tree run with
    ``PYTHONDONTWRITEBYTECODE=1`` (this container sets it) compiled every module again on
    every run: 0.43-0.45 s of import instead of 0.29-0.37 s.
    """
    compileall.compile_dir(tree / "bulkmail", quiet=1, force=False)


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
    result["connections"] = after["connections"] - before["connections"]
    result["bulk_calls"] = after.get("bulk_calls", 0) - before.get("bulk_calls", 0)
    return result


#: What each row of the throughput table runs: (client, --concurrency, campaign kind).
#: ``0`` means no --concurrency flag: the defaults a user who sets nothing gets.
VARIANTS: dict[str, tuple[str, int, str]] = {
    "bulkmail": ("bulkmail", 0, "inline"),
    "bulkmail@16": ("bulkmail", 16, "inline"),
    "bulkmail@32": ("bulkmail", 32, "inline"),
    "bulkmail@64": ("bulkmail", 64, "inline"),
    "boto3": ("boto3", 8, "inline"),
    "aiobotocore": ("aiobotocore", 64, "inline"),
    "template/SendEmail": ("bulkmail", 0, "single"),
    "template/SendBulkEmail": ("bulkmail", 0, "bulk"),
}
DEFAULT_ROWS = ",".join(VARIANTS)


def _folders(tmp: Path, n: int, kinds: set[str]) -> dict[str, Path]:
    folders = {}
    for kind in sorted(kinds):
        if kind == "inline":
            folders[kind] = write_campaign(tmp / kind, n, rate=1_000_000).parent
        else:
            folders[kind] = write_template_campaign(tmp / kind, n, bulk=kind == "bulk").parent
    return folders


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    names = args.only.split(",")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown client(s) {unknown}; choose from {', '.join(VARIANTS)}")
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bulkmail-bench-") as tmp, sink() as url:
        folders = _folders(Path(tmp), args.n, {VARIANTS[name][2] for name in names})
        for repeat in range(args.repeats):
            for name in names:
                client, concurrency, kind = VARIANTS[name]
                result = run_client(client, folders[kind], url, concurrency)
                rows[name].append(result)
                print(
                    f"  run {repeat + 1} {name:24s} {result['sent'] / result['wall_s']:8.0f}/s"
                    f"  ({result['connections']} connections)",
                    file=sys.stderr,
                )
    table = []
    for name in names:
        runs = rows[name]
        rates = [r["sent"] / r["wall_s"] for r in runs]
        table.append(
            {
                "client": name,
                "sent": runs[0]["sent"],
                "sends_per_s": statistics.median(rates),
                "best_per_s": max(rates),
                "cpu_us_per_send": statistics.median(r["cpu_s"] / r["sent"] * 1e6 for r in runs),
                "peak_rss_mb": max(r["maxrss_mb"] for r in runs),
                "sink_cpu_us_per_send": statistics.median(
                    r["sink_cpu_s"] / r["sent"] * 1e6 for r in runs
                ),
                "connections": max(r["connections"] for r in runs),
                "calls": max(r["bulk_calls"] for r in runs),
                "throttled": sum(r["throttled"] for r in runs),
            }
        )
    return table


def print_table(table: list[dict[str, Any]], n: int) -> None:
    base = {row["client"]: row["sends_per_s"] for row in table}
    bm = base.get("bulkmail")
    print(f"\n{n} recipients, personalised ~2 KB text + HTML (template rows: an SES stored")
    print("template with per-recipient data), loopback sink; median of the interleaved repeats\n")
    print(
        "| client | sends/s | best run | CPU µs/send | peak RSS MB | connections "
        "| sink CPU µs/send | defaults × |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in table:
        ratio = f"{bm / row['sends_per_s']:.2f}×" if bm and row["client"] != "bulkmail" else "—"
        print(
            f"| {row['client']} | {row['sends_per_s']:,.0f} | {row['best_per_s']:,.0f} "
            f"| {row['cpu_us_per_send']:,.0f} | {row['peak_rss_mb']:.0f} "
            f"| {row['connections']} | {row['sink_cpu_us_per_send']:.0f} | {ratio} |"
        )


def chart(table: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "(matplotlib not installed: pip install -e '.[bench]' for the chart)", file=sys.stderr
        )
        return
    names = [r["client"] for r in table]
    colours = ["#2a7" if n.startswith(("bulkmail", "template")) else "#999" for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.barh(names, [r["sends_per_s"] for r in table], color=colours)
    for y, r in enumerate(table):
        ax.text(r["sends_per_s"], y, f" {r['sends_per_s']:,.0f}", va="center", fontsize=8)
    ax.set_xlabel("recipients per second, loopback sink (higher is better)")
    ax.set_xlim(0, 1.15 * max(r["sends_per_s"] for r in table))
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"chart: {path}", file=sys.stderr)


def pacing(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each rate against a sink refusing more than R in any 1-s window: N = R × seconds
    recipients, and (``--marginal``) N/5 too, for the marginal rate
    (N − N/5) / (wall(N) − wall(N/5)), which start-up and one-off costs do not dilute."""
    rows = []
    for rate in [float(r) for r in args.rates.split(",")]:
        n = max(int(rate * args.seconds), 50)
        sizes = [n, n // 5] if args.marginal else [n]
        runs: dict[int, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory() as tmp, sink(quota=rate) as url:
            for size in sizes:
                folder = Path(tmp) / str(size)
                write_campaign(folder, size, rate=rate)
                result = run_client("bulkmail", folder, url, args.bulkmail_concurrency)
                result["max_window"] = sink_stats(url)["max_window"]
                runs[size] = result
        big = runs[n]
        row = {
            "rate": rate,
            "n": n,
            "wall_s": big["wall_s"],
            "wall_ratio": big["sent"] / big["wall_s"] / rate,
            "span_ratio": big["span_rate"] / rate,
            "throttled": sum(r["throttled"] for r in runs.values()),
            "max_window": max(r["max_window"] for r in runs.values()),
            "marginal_ratio": None,
        }
        if args.marginal:
            small = runs[n // 5]
            row["marginal_ratio"] = (
                (big["sent"] - small["sent"]) / (big["wall_s"] - small["wall_s"]) / rate
            )
        rows.append(row)
        print(
            f"  rate {rate:g}: wall {row['wall_ratio']:.3f} R, span {row['span_ratio']:.3f} R, "
            f"marginal {row['marginal_ratio'] or float('nan'):.3f} R, "
            f"{row['throttled']} throttled",
            file=sys.stderr,
        )
    return rows


def print_pacing(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| rate R | recipients | wall s | wall rate/R | send-span rate/R | throttled "
        "| max in any 1 s | marginal rate/R |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        marginal = "—" if r["marginal_ratio"] is None else f"{r['marginal_ratio']:.3f}"
        print(
            f"| {r['rate']:g} | {r['n']} | {r['wall_s']:.1f} | {r['wall_ratio']:.3f} "
            f"| {r['span_ratio']:.3f} | {r['throttled']} | {r['max_window']} | {marginal} |",
            flush=True,
        )


def latency(args: argparse.Namespace) -> None:
    n = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory() as tmp, sink(latency=args.latency) as url:
        folder = Path(tmp)
        write_campaign(folder, n, rate=args.rate)
        result = run_client("bulkmail", folder, url, 0)
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
        choices=["all", "throughput", "pacing", "latency", "memory", "resume", "proxy", "fleet"],
    )
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default=DEFAULT_ROWS)
    parser.add_argument(
        "--chart", default="", help="PNG bar chart (mode all: benchmarks/throughput.png)"
    )
    parser.add_argument("--no-chart", dest="chart", action="store_const", const=None)
    parser.add_argument("--rates", default="14,500,5000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--marginal", action="store_true", help="pacing: also run N/5")
    parser.add_argument(
        "--bulkmail-concurrency", type=int, default=0, help="pacing: bulkmail's (0: defaults)"
    )
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--latency", type=float, default=0.08)
    from benchmarks.proxy import add_arguments, proxy_bench

    add_arguments(parser)
    args = parser.parse_args(argv)
    byte_compile(ROOT)
    if args.mode == "fleet":  # 1, 2, 4 workers unpaced, then 4 workers at --rate
        from benchmarks import fleet

        fleet.main(["table", "--n", str(args.n)])
        fleet.main(["pacing", "--n", str(args.n), "--rate", str(args.rate)])
        return
    if args.mode == "all":
        from benchmarks.suite import run_suite

        run_suite(args)
    elif args.mode == "proxy":
        proxy_bench(args)
    elif args.mode == "throughput":
        table = throughput(args)
        print_table(table, args.n)
        if args.chart:
            chart(table, Path(args.chart))
    elif args.mode == "pacing":
        print_pacing(pacing(args))
    elif args.mode == "latency":
        latency(args)
    else:
        if args.n == 20000:
            args.n = 1_000_000
        (memory if args.mode == "memory" else resume)(args)


if __name__ == "__main__":
    main()
