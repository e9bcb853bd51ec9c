"""The benchmark driver runs end to end on a tiny N (benchmarks are not tests: no timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_driver_runs_every_client_on_a_tiny_list() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--n", "40", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    clients = {line.split("|")[1].strip() for line in table[1:]}
    assert {"bulkmail", "boto3", "aiobotocore"} <= clients
    for line in table[1:]:
        if (
            line.startswith("| bulkmail")
            or line.startswith("| boto3")
            or line.startswith("| aiobotocore")
        ):
            sends_per_s = float(line.split("|")[2].replace(",", ""))
            assert sends_per_s > 0


def test_pacing_mode_reports_no_throttling_at_a_small_rate() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "pacing", "--rates", "40", "--seconds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    row = [line for line in out.stdout.splitlines() if line.startswith("| 40 ")][0]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[5] == "0"  # throttled
    assert int(cells[6]) <= 40  # never more than R in any second at the sink
