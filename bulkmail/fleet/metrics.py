"""``bulkmail worker --metrics HOST:PORT``: Prometheus text for one worker.

Gauges are read from the worker's live engine state when Prometheus scrapes (a custom
collector, so nothing is updated on the send path): sent, failed, throttled, in flight,
this worker's queue (rows composed, waiting for a slot), the campaign's chunks queued in
Redis (from the last status poll), and the fleet's effective rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from bulkmail.fleet.worker import WorkerState


class WorkerCollector(Collector):
    """Exposes a :class:`WorkerState` per campaign.

    >>> registry = CollectorRegistry()
    >>> registry.register(WorkerCollector(WorkerState()))
    """

    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self.depth: dict[str, int] = {}

    def collect(self) -> Iterator[Any]:
        sent = CounterMetricFamily("bulkmail_sent", "Recipients sent", labels=["campaign"])
        failed = CounterMetricFamily("bulkmail_failed", "Recipients failed", labels=["campaign"])
        throttled = CounterMetricFamily(
            "bulkmail_throttled", "Throttled answers", labels=["campaign"]
        )
        in_flight = GaugeMetricFamily(
            "bulkmail_in_flight", "Requests in flight", labels=["campaign"]
        )
        queue = GaugeMetricFamily(
            "bulkmail_queue_depth", "Chunks waiting in Redis", labels=["campaign"]
        )
        rate = GaugeMetricFamily(
            "bulkmail_rate", "Fleet effective rate (recipients/s)", labels=["campaign"]
        )
        for name, run in list(self.state.runs.items()):
            sent.add_metric([name], run.progress.sent)
            failed.add_metric([name], run.progress.failed)
            throttled.add_metric([name], run.sender.counters["throttled"])
            in_flight.add_metric([name], run.sender.in_flight)
            queue.add_metric([name], self.depth.get(name, 0))
            rate.add_metric([name], run.sender.limiter.effective_rate)
        yield from (sent, failed, throttled, in_flight, queue, rate)


async def serve_metrics(address: str, state: WorkerState, link: Any) -> None:
    """Serve until cancelled; refreshes the queue depth from Redis every 2 s."""
    from bulkmail.fleet.keys import GROUP, CampaignKeys

    host, _, port = address.rpartition(":")
    registry = CollectorRegistry()
    collector = WorkerCollector(state)
    registry.register(collector)
    server, thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    try:
        while True:
            for name in list(state.runs):
                keys = CampaignKeys(name)
                try:
                    length = await link.call(lambda r, k=keys: r.xlen(k.stream), retry=False)
                    pending = await link.call(
                        lambda r, k=keys: r.xpending(k.stream, GROUP), retry=False
                    )
                    collector.depth[name] = max(0, int(length) - int(pending["pending"]))
                except Exception:  # Redis away: keep the last figure
                    pass
            await asyncio.sleep(2.0)
    finally:
        server.shutdown()
        thread.join(timeout=2)


__all__ = ["WorkerCollector", "serve_metrics"]
