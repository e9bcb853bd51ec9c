"""``make bench``: every benchmark in one run, one table, the issue's checks, and a chart.

    python -m benchmarks.run all [--n 20000] [--repeats 2] [--chart PATH | --no-chart]

Rows, each a bulkmail CLI process (or an SDK client) against the loopback sink in its own
process, interleaved within each part so drift on a shared machine hits every row alike:

1. throughput, 20,000 personalised recipients, sink answering at once: bulkmail with the
   defaults, pinned at ``--concurrency`` 16/32/64, boto3, aiobotocore, and an SES stored
   template sent per recipient (``SendEmail``) and in ``SendBulkEmail`` calls;
2. the same sink adding 80 ms to every answer, no rate limit: defaults vs 32/64 pinned;
3. 80 ms added, ``rate: 2000``: the gate must grow to rate × latency;
4. ``rate: 5000`` against a sink refusing more than 5,000 in any 1-s window, 50,000 and
   10,000 recipients, for the marginal rate (N − N/5) / (wall(N) − wall(N/5)).

Then the checks of issue #15, each with its measured figure and whether it held.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.run import (
    ROOT,
    VARIANTS,
    chart,
    pacing,
    run_client,
    sink,
    throughput,
    write_campaign,
)

LATENCY_ROWS = {"bulkmail": 0, "bulkmail@32": 32, "bulkmail@64": 64}


def _latency_rows(n: int, repeats: int) -> list[dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in LATENCY_ROWS}
    with tempfile.TemporaryDirectory() as tmp, sink(latency=0.08) as url:
        folder = write_campaign(Path(tmp), n, rate=1_000_000).parent
        for _ in range(repeats):
            for name, concurrency in LATENCY_ROWS.items():
                result = run_client("bulkmail", folder, url, concurrency)
                runs[name].append(result)
                print(
                    f"  80 ms {name:12s} {result['sent'] / result['wall_s']:8.0f}/s",
                    file=sys.stderr,
                )
    return [_row(f"{name}, 80 ms", rs) for name, rs in runs.items()]


def _paced_latency_row(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, sink(latency=0.08) as url:
        folder = write_campaign(Path(tmp), n, rate=2000).parent
        result = run_client("bulkmail", folder, url, 0)
    row = _row("bulkmail, 80 ms, rate 2000", [result])
    row["note"] = f"{result['sent'] / result['wall_s'] / 2000:.1%} of rate by wall clock"
    return row


def _row(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["sent"] / r["wall_s"] for r in runs]
    return {
        "client": name,
        "sent": runs[0]["sent"],
        "sends_per_s": statistics.median(rates),
        "best_per_s": max(rates),
        "cpu_us_per_send": statistics.median(r["cpu_s"] / r["sent"] * 1e6 for r in runs),
        "peak_rss_mb": max(r["maxrss_mb"] for r in runs),
        "connections": max(r["connections"] for r in runs),
        "throttled": sum(r["throttled"] for r in runs),
        "note": "",
    }


def print_everything(rows: list[dict[str, Any]], checks: list[tuple[str, str, bool]]) -> None:
    print("\n| run | recipients | sends/s | CPU µs/send | peak RSS MB | connections | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['client']} | {r['sent']:,} | {r['sends_per_s']:,.0f} "
            f"| {r['cpu_us_per_send']:,.0f} | {r['peak_rss_mb']:.0f} | {r['connections']} "
            f"| {r['note']} |"
        )
    print("\n| issue #15 check | measured | held |")
    print("|---|---|---|")
    for what, figure, ok in checks:
        print(f"| {what} | {figure} | {'yes' if ok else '**no**'} |")


def run_suite(args: argparse.Namespace) -> None:
    names = [name for name in args.only.split(",") if name in VARIANTS]
    args.only = ",".join(names)
    table = throughput(args)
    by = {row["client"]: row for row in table}
    for row in table:
        row["note"] = (f"{row['calls']:,} SendBulkEmail calls" if row["calls"] else "") + (
            f", {row['throttled']} throttled" if row["throttled"] else ""
        )
    latency_n = max(40, args.n // 5)
    rows = list(table)
    rows += _latency_rows(latency_n, args.repeats)
    rows.append(_paced_latency_row(max(40, int(args.n * 0.8))))
    pace_args = argparse.Namespace(
        rates="5000", seconds=max(0.01, args.n * 2.5 / 5000), marginal=True, bulkmail_concurrency=0
    )
    paced = pacing(pace_args)[0]
    rows.append(
        {
            "client": "bulkmail, rate 5000, strict 1-s quota",
            "sent": paced["n"],
            "sends_per_s": paced["wall_ratio"] * 5000,
            "best_per_s": paced["wall_ratio"] * 5000,
            "cpu_us_per_send": float("nan"),
            "peak_rss_mb": float("nan"),
            "connections": "",
            "note": (
                f"marginal {paced['marginal_ratio']:.3f} R, send span "
                f"{paced['span_ratio']:.3f} R, {paced['throttled']} throttled, "
                f"max {paced['max_window']} in any 1 s"
            ),
        }
    )
    checks: list[tuple[str, str, bool]] = []
    if {"bulkmail", "bulkmail@32", "bulkmail@64"} <= by.keys():
        best = max(by["bulkmail@32"]["sends_per_s"], by["bulkmail@64"]["sends_per_s"])
        share = by["bulkmail"]["sends_per_s"] / best
        checks.append(
            ("defaults ≥ 0.9 × best of --concurrency 32/64", f"{share:.2f}×", share >= 0.9)
        )
    lat = {r["client"]: r["sends_per_s"] for r in rows if r["client"].endswith(", 80 ms")}
    if lat:
        best = max(lat["bulkmail@32, 80 ms"], lat["bulkmail@64, 80 ms"])
        share = lat["bulkmail, 80 ms"] / best
        checks.append(("80 ms: defaults ≥ 0.9 × best of 32/64", f"{share:.2f}×", share >= 0.9))
    if {"bulkmail", "aiobotocore"} <= by.keys():
        times = by["bulkmail"]["sends_per_s"] / by["aiobotocore"]["sends_per_s"]
        checks.append(("defaults ≥ 8× aiobotocore (stretch 12×)", f"{times:.2f}×", times >= 8))
    if paced["marginal_ratio"] is not None:
        ok = paced["marginal_ratio"] >= 0.97 and paced["throttled"] == 0
        checks.append(
            (
                "5,000/s: ≥ 0.97 R marginal, 0 throttled",
                f"{paced['marginal_ratio']:.3f} R, {paced['throttled']} throttled",
                ok,
            )
        )
    if {"template/SendEmail", "template/SendBulkEmail"} <= by.keys():
        times = (
            by["template/SendBulkEmail"]["sends_per_s"] / by["template/SendEmail"]["sends_per_s"]
        )
        checks.append(("SendBulkEmail vs per-recipient SendEmail", f"{times:.2f}×", times > 1))
    print(f"\n{args.n:,} recipients a throughput row; medians of {args.repeats} interleaved runs")
    print_everything(rows, checks)
    if args.chart is not None:
        chart(table, Path(args.chart or ROOT / "benchmarks" / "throughput.png"))
