"""``bulkmail events``: the HTTP(S) endpoint Amazon SNS delivers SES events to.

Every request is checked before anything is recorded, in this order, and refused with a 4xx
(nothing written) at the first check that fails::

    POST, a JSON body <= 256 KiB with a known SNS Type          else 405 / 413 / 400
    TopicArn is one of the configured topics                     else 403
    SigningCertURL is https://<allowed host>/....pem             else 403
    the certificate (fetched over verified HTTPS, cached) signed
    the documented string to sign (SignatureVersion 1 or 2)      else 403  (503: fetch failed)

Then a ``SubscriptionConfirmation`` is confirmed by fetching its ``SubscribeURL`` (same host
rules), an ``UnsubscribeConfirmation`` is logged, and a ``Notification`` carrying SES events
is recorded: every recipient's event goes to the event store; permanent bounces and
complaints are appended to the suppression file. An SNS redelivery changes nothing.

>>> async def main(config: EventsConfig) -> None:                 # doctest: +SKIP
...     async with EventsServer(config) as server:
...         print(server.url)          # http://127.0.0.1:8026
...         await asyncio.Event().wait()
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from cryptography import x509

from bulkmail.deliverability.config import EventsConfig
from bulkmail.deliverability.ses_events import Event, NotAnSesEvent, parse_ses_message
from bulkmail.deliverability.store import EventStore
from bulkmail.deliverability.suppression import SuppressionFile
from bulkmail.signing import sns

log = logging.getLogger("bulkmail.events")
MAX_BODY = 256 * 1024  # SNS messages are at most 256 KB
_MAX_FETCH = 64 * 1024
_MAX_CERTS = 16
Fetch = Callable[[str], Awaitable[bytes]]


class FetchFailed(Exception):
    """A certificate or SubscribeURL could not be fetched (network, TLS, not 200)."""


def https_fetcher(ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0) -> Fetch:
    """GET over verified HTTPS (system trust store unless ``ssl_context``), no redirects."""
    context = ssl_context or ssl.create_default_context()

    async def fetch(url: str) -> bytes:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.get(url, ssl=context, allow_redirects=False) as response,
            ):
                if response.status != 200:
                    raise FetchFailed(f"{url}: HTTP {response.status}")
                body = await response.content.read(_MAX_FETCH + 1)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise FetchFailed(f"{url}: {type(exc).__name__}: {exc}") from None
        if len(body) > _MAX_FETCH:
            raise FetchFailed(f"{url}: answer larger than {_MAX_FETCH} bytes")
        return body

    return fetch


class EventsServer:
    """The SNS endpoint for one :class:`EventsConfig`; an async context manager.

    ``fetch`` (certificates, SubscribeURL) and ``clock`` are injectable; :attr:`stats`
    counts what happened (``refused:<why>``, ``bounce:Permanent``, ``complaint``, ...).

    >>> server = EventsServer(config, port=0)                      # doctest: +SKIP
    """

    def __init__(
        self,
        config: EventsConfig,
        *,
        port: int | None = None,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._port = config.listen[1] if port is None else port
        self._fetch = fetch or https_fetcher()
        self._clock = clock
        self._certs: dict[str, x509.Certificate] = {}
        self._suppression = SuppressionFile(config.suppress)
        self._store: EventStore | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="bulkmail-events")
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.stats: Counter[str] = Counter()
        self.suppressed: list[str] = []
        self._pending: list[tuple[str, list[Event], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        tls = None
        if self.config.tls_cert is not None and self.config.tls_key is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        self._store = await self._db(EventStore.open, self.config.events)
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host = self.config.listen[0]
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self._port))
            await web.SockSite(self._runner, sock, ssl_context=tls).start()
        except BaseException:
            sock.close()
            raise
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{shown}:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._flusher is not None:
            await asyncio.wait([self._flusher])
        store, self._store = self._store, None
        if store is not None:
            await self._db(store.close)
        self._executor.shutdown(wait=True)

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _refuse(self, status: int, why: str, detail: str) -> web.Response:
        self.stats[f"refused:{why}"] += 1
        log.warning("refused (%s): %s", why, detail)
        return web.Response(status=status, text=f"{detail}\n")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return self._refuse(405, "method", f"{request.method} is not accepted; SNS POSTs")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, "size", "the body is larger than an SNS message can be")
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._refuse(400, "json", "the body is not JSON")
        if not isinstance(message, dict) or message.get("Type") not in sns.MESSAGE_TYPES:
            return self._refuse(400, "type", "not an SNS message (unknown Type)")
        header = request.headers.get("x-amz-sns-message-type")
        if header is not None and header != message["Type"]:
            return self._refuse(400, "type", "x-amz-sns-message-type differs from the Type")
        topic = message.get("TopicArn")
        if topic not in self.config.topics:
            return self._refuse(403, "topic", f"topic {str(topic)[:200]!r} is not configured")
        url = message.get("SigningCertURL")
        if not sns.cert_url_allowed(url, self.config.cert_hosts):
            return self._refuse(403, "cert_url", f"SigningCertURL {str(url)[:200]!r} not allowed")
        assert isinstance(url, str)
        try:
            cert = await self._certificate(url)
            sns.verify(message, cert)
        except FetchFailed as exc:
            log.warning("cannot fetch the signing certificate: %s", exc)
            self.stats["cert_fetch_failed"] += 1
            return web.Response(status=503, text="the signing certificate cannot be fetched\n")
        except sns.SnsSignatureError as exc:
            return self._refuse(403, "signature", str(exc))
        return await self._accept(message)

    async def _certificate(self, url: str) -> x509.Certificate:
        cert = self._certs.get(url)
        if cert is None:
            cert = sns.load_certificate(await self._fetch(url), self._clock())
            if len(self._certs) >= _MAX_CERTS:  # SNS rotates rarely: drop the oldest
                del self._certs[next(iter(self._certs))]
            self._certs[url] = cert
        return cert

    async def _accept(self, message: dict[str, Any]) -> web.Response:
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            url = message.get("SubscribeURL")
            if not sns.cert_url_allowed(url, self.config.cert_hosts, pem=False):
                return self._refuse(403, "subscribe_url", "SubscribeURL is not on an allowed host")
            assert isinstance(url, str)
            try:
                await self._fetch(url)
            except FetchFailed as exc:
                log.warning("cannot confirm the subscription: %s", exc)
                return web.Response(status=503, text="the subscription cannot be confirmed\n")
            self.stats["subscription_confirmed"] += 1
            log.warning("confirmed the subscription to %s", message["TopicArn"])
            return web.Response(status=200)
        if kind == "UnsubscribeConfirmation":
            self.stats["unsubscribed"] += 1
            log.warning("unsubscribed from %s (SNS will send nothing more)", message["TopicArn"])
            return web.Response(status=200)
        try:
            events = parse_ses_message(message["Message"])
        except NotAnSesEvent as exc:
            self.stats["ignored"] += 1  # signed and ours, but nothing to record: no retry
            log.warning("ignored a notification: %s", exc)
            return web.Response(status=200)
        try:
            await self._record(str(message["MessageId"]), events)
        except (OSError, sqlite3.Error) as exc:  # disk full, store unreadable: SNS retries
            log.error("cannot record an event: %s", exc)
            return web.Response(status=503, text="the event cannot be recorded now\n")
        return web.Response(status=200)

    async def _record(self, sns_id: str, events: list[Event]) -> None:
        """Recorded (store, then suppression file) before the answer; requests that arrive
        while a batch is being written share the next one: one commit and one fsync."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((sns_id, events, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._db(self._write, [(sns_id, events) for sns_id, events, _ in batch])
            except Exception as exc:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)

    def _write(self, messages: list[tuple[str, list[Event]]]) -> None:
        """In the store's thread: the event log first, then the suppression file."""
        assert self._store is not None
        self._store.add_many(messages, received_at=self._clock())
        events = [event for _, batch in messages for event in batch]
        for event in events:
            name = f"{event.kind}:{event.subtype or 'Undetermined'}"
            self.stats[name if event.kind == "bounce" else event.kind] += 1
        added = self._suppression.add(e.email for e in events if e.suppress)
        self.suppressed.extend(added)
        for email in added:
            log.info("suppressed %s", email)


async def serve_events(config: EventsConfig) -> None:
    """Serve ``config`` until cancelled, after printing where."""
    async with EventsServer(config) as server:
        print(
            f"bulkmail events: SNS endpoint at {server.url}\n"
            f"  topics: {', '.join(config.topics)}\n"
            f"  suppression file: {config.suppress}\n  event store: {config.events}\n"
            "  Ctrl-C to stop.",
            flush=True,
        )
        await asyncio.Event().wait()


__all__ = ["EventsServer", "FetchFailed", "https_fetcher", "serve_events"]
