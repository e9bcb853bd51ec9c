"""Before/after: the same campaign through two source trees, interleaved, one sink.

    python -m benchmarks.ab BEFORE_TREE AFTER_TREE [MORE_TREES...] [--n 20000] [--repeats 2]

Each run is the bulkmail CLI with the defaults (no ``--concurrency``) in its own process,
with ``PYTHONPATH`` set to the tree; the sink counts the connections each run opened. For a
change on a branch: ``git worktree add /tmp/before main`` and compare ``/tmp/before .``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import byte_compile, sink, sink_stats, write_campaign

_RUN = """
import sys
from bulkmail.cli import main
main([sys.argv[1], "--endpoint", sys.argv[2], "--json", "--quiet"])
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="two or more source trees, run in turn")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("AWS_ACCESS_KEY_ID", "AKIDBENCHEXAMPLE")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "bench/secret/key/EXAMPLE")
    for tree in args.trees:
        byte_compile(Path(tree).resolve())
    runs: dict[str, list[tuple[float, float]]] = {tree: [] for tree in args.trees}
    with tempfile.TemporaryDirectory() as tmp, sink(latency=args.latency) as url:
        path = write_campaign(Path(tmp), args.n, rate=1_000_000)
        for repeat in range(args.repeats):
            for tree in args.trees:
                for stale in path.parent.glob("campaign.journal.sqlite*"):
                    stale.unlink()
                before = sink_stats(url)
                cpu_before = _children_cpu()
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-c", _RUN, str(path), url],
                    env={**env, "PYTHONPATH": str(Path(tree).resolve())},
                    cwd=Path(tree).resolve(),  # "-c" puts the working directory first
                    capture_output=True,
                    check=True,
                )
                wall = time.perf_counter() - started
                cpu = _children_cpu() - cpu_before
                runs[tree].append((args.n / wall, cpu / args.n * 1e6))
                after = sink_stats(url)
                print(
                    f"run {repeat + 1} {tree:24s} {args.n / wall:8,.0f}/s  "
                    f"{cpu / args.n * 1e6:5.0f} µs CPU/send  "
                    f"{after['connections'] - before['connections']} connections",
                    flush=True,
                )

    first = statistics.median(rate for rate, _ in runs[args.trees[0]])
    print(f"\nmedian of {args.repeats} interleaved runs, {args.n:,} recipients each:")
    for tree, got in runs.items():
        rate = statistics.median(r for r, _ in got)
        cpu = statistics.median(c for _, c in got)
        print(f"  {tree:24s} {rate:8,.0f}/s  {cpu:5.0f} µs CPU/send  {rate / first:5.2f}×")


def _children_cpu() -> float:
    """User + system CPU of the finished child processes (the CLI runs), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
