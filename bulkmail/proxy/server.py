"""``bulkmail proxy``: the SES API in front, the unchanged engine behind.

Assembly only: the accept queue (:class:`~bulkmail.proxy.store.SqliteQueue`, or with
``queue: redis://...`` the fleet's Redis, :class:`~bulkmail.proxy.redis_queue.RedisQueue`,
shared by several proxies and paced by the fleet's pacer) is both the engine's intake and
its books; the provider comes from the registry (SES v2/v1, DirectMail,
SMTP: SES in, anything out); the local limiter paces one quota across every client; the
hardened HTTP server (:mod:`bulkmail.proxy.http`) serves :class:`~bulkmail.proxy.service.
ProxyService`::

    SDK ──SigV4──► HttpServer ─► ProxyService ─(fsync)─► SqliteQueue ─► CampaignRun ─► provider
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from typing import Any

from bulkmail.books.base import PendingRow
from bulkmail.delivery.engine import CampaignRun
from bulkmail.delivery.progress import Summary
from bulkmail.delivery.quota import resolve_rate
from bulkmail.delivery.sender import RetryPolicy, Sender
from bulkmail.errors import ConfigError, JournalError
from bulkmail.mail.message import Message
from bulkmail.providers.base import Provider
from bulkmail.providers.registry import build_provider
from bulkmail.proxy.config import ProxyConfig
from bulkmail.proxy.fanout import compose_message
from bulkmail.proxy.http import HttpServer, Limits
from bulkmail.proxy.service import ProxyService, Usage
from bulkmail.proxy.store import ProxyQueue, SqliteQueue

log = logging.getLogger("bulkmail.proxy")


def compose_row(row: PendingRow) -> Message:
    """The engine's compose step: a queued recipient -> its one-recipient message."""
    return compose_message(row.fields["spec"], row.fields["raw"], row.email, row.id)


class Proxy:
    """A running proxy. Use it as an async context manager.

    >>> async def main(config: ProxyConfig) -> None:                  # doctest: +SKIP
    ...     async with Proxy(config) as proxy:
    ...         print(proxy.url)          # point the SDK's endpoint_url here
    ...         await proxy.wait()        # until stopped (or the provider stops sending)

    ``provider``/``endpoint``/``credentials`` override what the config builds (tests, the
    benchmark); upstream credentials otherwise come from the environment.
    """

    def __init__(
        self,
        config: ProxyConfig,
        *,
        provider: Provider | None = None,
        endpoint: str | None = None,
        credentials: Any = None,
        grace: float = 10.0,
    ) -> None:
        self.config = config
        self._provider = provider
        self._endpoint = endpoint
        self._credentials = credentials
        self._grace = grace
        self._stop = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self.queue: ProxyQueue | None = None
        self.service: ProxyService | None = None
        self.http: HttpServer | None = None
        self.sender: Sender | None = None
        self._run: asyncio.Task[Summary] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        assert self.http is not None
        return f"{scheme}://{host}:{self.http.port}"

    async def __aenter__(self) -> Proxy:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _start(self) -> None:
        config = self.config
        provider = self._provider
        if provider is None:
            try:
                provider = build_provider(
                    config.provider_setup(endpoint=self._endpoint), credentials=self._credentials
                )
            except ValueError as exc:
                raise ConfigError(str(exc), file=str(config.path), key="provider") from None
        await provider.__aenter__()
        self._stack.push_async_callback(provider.__aexit__, None, None, None)
        rate, _ = await resolve_rate(provider, config.rate, None, file=str(config.path))
        quota = None
        with contextlib.suppress(OSError):
            quota = await provider.get_quota()
        usage = Usage(
            max_send_rate=quota.max_send_rate if quota else rate,
            max_24h=quota.max_24h if quota and quota.max_24h is not None else -1.0,
        )
        # Small batches keep the hand-out fair: a new small message waits at most about
        # half a second behind what is already queued for the engine.
        batch = max(10, min(500, int(rate * 0.25)))
        queue = await self._open_queue(batch)
        self.queue = queue
        self._stack.push_async_callback(queue.close)
        if queue.recovery.requeued:
            log.warning(
                "%d recipients were in flight when the proxy last stopped: sending them again "
                "flagged possible_duplicate",
                queue.recovery.requeued,
            )
        self._run = asyncio.create_task(self._serve(queue, provider, rate, batch))
        self.service = ProxyService(
            config.clients,
            queue,
            usage,
            max_backlog=config.max_backlog,
            region=config.provider.region or "us-east-1",
        )
        limits = Limits(
            header_timeout=config.header_timeout,
            body_timeout=config.body_timeout,
            max_connections=config.max_connections,
        )
        self.http = HttpServer(self.service, limits)
        context = None
        if config.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(config.tls[0]), str(config.tls[1]))
        await self.http.start(config.host, config.port, context)

    async def _open_queue(self, batch: int) -> ProxyQueue:
        config = self.config
        shares = {c.key.access_key_id: c.share for c in config.clients}
        if config.queue is None:
            return await SqliteQueue.open(
                config.journal, shares=shares, results=config.results, batch_size=batch
            )
        from bulkmail.proxy.redis_queue import RedisQueue  # needs bulkmail[fleet]

        q = config.queue
        # One name per host and port: a proxy restarted there takes its own chunks back at
        # once (no two live proxies can hold one port); port 0 gets a random one.
        consumer = f"{socket.gethostname()}:{config.port}" if config.port else None
        return await RedisQueue.open(
            q.url, shares=shares, name=q.name, results=config.results, batch_size=batch,
            visibility=q.visibility, keep=q.keep, consumer=consumer,
        )  # fmt: skip

    async def _serve(
        self, queue: ProxyQueue, provider: Provider, rate: float, batch: int
    ) -> Summary:
        """The engine over the queue; started again when another proxy sharing a Redis queue
        took over rows this one was slow to send (with a fresh sender: a drained one stays
        drained)."""
        while True:
            pacer = None
            if self.config.queue is not None:
                from bulkmail.proxy.redis_queue import shared_pacer

                pacer = shared_pacer(queue, self.config.provider, rate)
            self.sender = Sender(
                provider, rate=rate, retry=RetryPolicy(), limiter=pacer,
                min_concurrency=64 if pacer is not None else 32,
            )  # fmt: skip
            run = CampaignRun(
                intake=queue,
                books=queue,
                compose=compose_row,
                sender=self.sender,
                name="proxy",
                recovery=queue.recovery,
                stop=self._stop,
                grace=self._grace,
                chunk=batch,
                queue_depth=batch,
            )
            try:
                return await run.run()
            except JournalError as exc:
                if self._stop.is_set() or not await queue.take_over(exc):
                    raise
                log.warning("%s; starting the engine again", exc)

    async def wait(self) -> Summary:
        """Until :meth:`stop` (or the provider stops all sending); the engine's summary."""
        assert self._run is not None
        return await asyncio.shield(self._run)

    async def stop(self) -> Summary | None:
        """Stop accepting, drain what is in flight (``grace``), close the journal."""
        summary = None
        try:
            if self.http is not None:
                await self.http.stop()
            self._stop.set()
            if self._run is not None:
                run, self._run = self._run, None
                summary = await run
        finally:
            await self._stack.aclose()  # the journal is closed whatever the engine raised
        return summary


async def run_proxy(config: ProxyConfig, *, out: Any = None) -> Summary | None:
    """Serve until SIGINT/SIGTERM, after printing where; the engine's final summary."""
    loop = asyncio.get_running_loop()
    async with Proxy(config) as proxy:
        done = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        print(
            f"bulkmail proxy: SES API at {proxy.url} for {len(config.clients)} client(s), "
            f"sending through {config.provider.name}; "
            + (f"queue {config.queue.display}" if config.queue else f"journal {config.journal}"),
            file=out,
            flush=True,
        )
        waiter = asyncio.create_task(proxy.wait())
        stopper = asyncio.create_task(done.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            early = waiter.result()
            if early.stopped:
                log.error("sending stopped: %s", early.stopped)
        return await proxy.stop()


__all__ = ["Proxy", "compose_row", "run_proxy"]
