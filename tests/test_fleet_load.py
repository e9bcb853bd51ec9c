"""The issue's acceptance runs, scaled down for this 2-core box: worker processes sharing a
2,000/s quota against a sink that refuses more than 2,000 in any 1-second window, with a
worker SIGKILLed (and a fresh one started), or Redis restarted (AOF on), mid-run."""

from __future__ import annotations

import pytest

from benchmarks.fleet import run

N = 3000


@pytest.mark.slow
def test_killed_worker_nobody_missing_duplicates_only_flagged() -> None:
    result = run(N, 4, 2000, kill=2.0)
    assert result["missing"] == 0
    assert result["repeated_unflagged"] == 0
    assert result["throttled"] <= 0.001 * N
    assert result["statuses"].get("sent") == N
    assert result["max_window"] <= 2000


@pytest.mark.slow
def test_redis_restart_nothing_missing_nothing_repeated_unflagged() -> None:
    result = run(N, 2, 2000, restart_redis=2.0)
    assert result["missing"] == 0
    assert result["repeated_unflagged"] == 0
    assert result["statuses"].get("sent") == N
