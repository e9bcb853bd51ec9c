"""A fleet worker: the engine with a Redis stream as intake, Redis books and the fleet pacer.

:func:`run_worker` serves one campaign, or every campaign in ``bulkmail:campaigns``
(found again every few seconds). Per campaign it assembles exactly the pipeline of a local
run (:mod:`bulkmail.api`): the provider from the registry with credentials from *this*
machine's environment, a :class:`~bulkmail.delivery.sender.Sender` paced by the shared
:class:`~bulkmail.pacing.redis.RedisPacer`, the composer rebuilt from the stored
definition, and :class:`~bulkmail.delivery.engine.CampaignRun` over
:class:`~bulkmail.fleet.intake.RedisIntake` and :class:`~bulkmail.fleet.books.RedisBooks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bulkmail.api import make_provider, open_provider
from bulkmail.books.base import PendingRow
from bulkmail.delivery.engine import CampaignRun, Compose
from bulkmail.delivery.progress import Summary
from bulkmail.delivery.quota import resolve_rate
from bulkmail.delivery.sender import RetryPolicy, Sender
from bulkmail.errors import ConfigError, CredentialsError, JournalError, QuotaExhausted
from bulkmail.fleet.books import RedisBooks
from bulkmail.fleet.definition import campaign_from_data, overridden
from bulkmail.fleet.intake import RedisIntake
from bulkmail.fleet.keys import CAMPAIGNS, CampaignKeys
from bulkmail.fleet.link import FleetError, Link, decode
from bulkmail.input.campaign import Campaign
from bulkmail.input.compose import Composer
from bulkmail.input.recipients import Recipient
from bulkmail.pacing.base import Pacer
from bulkmail.pacing.local import RateLimiter
from bulkmail.pacing.redis import RedisPacer
from bulkmail.providers.config import ProviderConfig

log = logging.getLogger("bulkmail.fleet")

#: At or above this rate the campaign is unpaced: no shared pacer (benchmarks, a relay).
UNPACED = 100_000.0
#: Requests a worker may have waiting for a slot or in flight, at least (see _run).
GATE_FLOOR = 64


@dataclass(slots=True, kw_only=True)
class WorkerOptions:
    """How one worker runs (the ``bulkmail worker`` flags).

    >>> WorkerOptions(concurrency=64).visibility
    30.0
    """

    campaign: str | None = None
    exit_when_done: bool = False
    concurrency: int | None = None
    visibility: float = 30.0
    endpoint: str | None = None
    grace: float = 10.0
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


@dataclass(slots=True)
class WorkerState:
    """Live figures of one worker, per campaign (the metrics endpoint reads them)."""

    runs: dict[str, CampaignRun] = field(default_factory=dict)
    intakes: dict[str, RedisIntake] = field(default_factory=dict)
    summaries: dict[str, Summary] = field(default_factory=dict)
    pacers: dict[str, Pacer] = field(default_factory=dict)


def account_key(provider: ProviderConfig, environ: dict[str, str] | None = None) -> str:
    """The pacer's key for a provider account: a hash of provider, region, host and access
    key id (or SMTP user) — never the key itself."""
    env = dict(os.environ if environ is None else environ)
    p = provider
    key_id = ""
    if p.name == "ses" or (p.name == "smtp" and not p.username):
        key_id = env.get("AWS_ACCESS_KEY_ID", "") or env.get("AWS_PROFILE", "")
    elif p.name == "directmail":
        key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
    parts = [p.name, p.region or "", p.host or "", str(p.port or ""), p.username or "", key_id]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


async def load_campaign(link: Link, name: str) -> tuple[Campaign, bool, Any]:
    """The stored campaign, whether it is at-most-once, and its temporary folder."""
    keys = CampaignKeys(name)
    meta: dict[bytes, bytes] = await link.call(lambda r: r.hgetall(keys.meta))
    if not meta or b"definition" not in meta:
        raise FleetError(f"campaign {name!r} is not in Redis (enqueue it first)")
    files = [meta[f"file:{i}".encode()] for i in range(int(meta.get(b"files", 0)))]
    campaign, holder = campaign_from_data(meta[b"definition"], files)
    return campaign, decode(meta.get(b"at_most_once", b"0")) == "1", holder


def compose_rows(composer: Composer) -> Compose:
    def compose(row: PendingRow) -> Any:
        recipient = Recipient(line=row.line, email=row.email, key="", fields=row.fields)
        return composer.compose(recipient, key=row.id)

    return compose


async def serve_campaign(
    link: Link,
    name: str,
    options: WorkerOptions,
    stop: asyncio.Event,
    state: WorkerState | None = None,
) -> Summary:
    """Send a campaign's chunks until it is done (``exit_when_done``) or ``stop`` is set."""
    state = state or WorkerState()
    campaign, at_most_once, holder = await load_campaign(link, name)
    try:
        if options.endpoint:
            campaign = overridden(campaign, {"provider": _with_endpoint(campaign, options)})
        composer = Composer.for_campaign(campaign)
        async with contextlib.AsyncExitStack() as stack:
            if options.endpoint:
                provider = make_provider(campaign)
            else:
                provider = await stack.enter_async_context(open_provider(campaign))
            await provider.__aenter__()
            stack.push_async_callback(provider.__aexit__, None, None, None)
            rate, _ = await resolve_rate(
                provider, campaign.rate, None, file=f"campaign {name!r} in Redis"
            )
            return await _run(
                link, campaign, provider, rate, composer, at_most_once, options, stop, state
            )
    finally:
        if holder is not None:
            holder.cleanup()


def _with_endpoint(campaign: Campaign, options: WorkerOptions) -> Any:
    import dataclasses

    return dataclasses.replace(campaign.provider, endpoint=options.endpoint)


async def _run(
    link: Link,
    campaign: Campaign,
    provider: Any,
    rate: float,
    composer: Composer,
    at_most_once: bool,
    options: WorkerOptions,
    stop: asyncio.Event,
    state: WorkerState,
) -> Summary:
    name = campaign.name
    pacer: Pacer
    if rate >= UNPACED:
        pacer = RateLimiter(rate)
    else:
        pacer = RedisPacer(
            link, account_key(campaign.provider), rate=rate, daily_limit=campaign.daily_limit
        )
    cap = options.concurrency or campaign.concurrency or 512
    state.pacers[name] = pacer
    while True:
        # A new Sender each time round: one whose run ended in a JournalError has drained
        # (and would hand every later row back unsent); the pacer is shared.
        sender = Sender(
            provider,
            rate=rate,
            retry=RetryPolicy(max_attempts=campaign.max_attempts),
            at_most_once=at_most_once,
            max_concurrency=cap,
            # A worker's requests wait for their fleet slot while holding a gate place, so
            # Little's law needs room for that wait too.
            min_concurrency=min(GATE_FLOOR if isinstance(pacer, RedisPacer) else 32, cap),
            limiter=pacer,
        )
        if isinstance(pacer, RedisPacer):
            pacer.on_exhausted = _stopper(sender, pacer)
        intake = RedisIntake(
            link,
            name,
            consumer=options.consumer,
            visibility=options.visibility,
            at_most_once=at_most_once,
            wait=not options.exit_when_done,
            stop=stop,
        )
        run = CampaignRun(
            intake=intake,
            books=RedisBooks(link, name),
            compose=compose_rows(composer),
            sender=sender,
            name=name,
            stop=stop,
            grace=options.grace,
            chunk=500,
            # Outcomes reach Redis in groups every 0.25 s (a chunk that completes is recorded
            # and settled at once): 0.01 round trips a recipient at 500/s per worker.
            flush_interval=0.25,
            queue_depth=400,
        )
        state.runs[name] = run
        state.intakes[name] = intake
        try:
            summary = await run.run()
        except JournalError as exc:  # a chunk another worker took over meanwhile
            log.warning("%s: %s; starting over", name, exc)
            await intake.release()
            await asyncio.sleep(1.0)
            continue
        await intake.release()
        await intake.leave()
        state.summaries[name] = summary
        if intake.finished:
            await _expire(link, name)
        return summary


def _stopper(sender: Sender, pacer: RedisPacer) -> Callable[[], None]:
    def stop() -> None:
        sender.stop(
            QuotaExhausted(
                f"the fleet's daily limit of {pacer.daily_limit} recipients is used up",
                code="DailyLimit",
            )
        )

    return stop


async def _expire(link: Link, name: str) -> None:
    """A finished campaign's data expires after its ``ttl`` (set by ``enqueue --expire``)."""
    keys = CampaignKeys(name)
    ttl = await link.call(lambda r: r.hget(keys.meta, "ttl"))
    seconds = int(ttl or 0)
    if seconds <= 0:
        return

    async def step(r: Any) -> None:
        pipe = r.pipeline(transaction=False)
        for key in keys.all():
            pipe.expire(key, seconds)
        await pipe.execute()

    await link.call(step)


async def run_worker(
    link: Link,
    options: WorkerOptions,
    stop: asyncio.Event,
    state: WorkerState | None = None,
    *,
    rescan: float = 5.0,
) -> dict[str, Summary]:
    """Serve ``options.campaign`` or every stored campaign until done or stopped."""
    state = state or WorkerState()
    tasks: dict[str, asyncio.Task[Summary]] = {}
    errors: list[BaseException] = []
    while True:
        if options.campaign:
            names = {options.campaign}
        else:
            names = {decode(n) for n in await link.call(lambda r: r.smembers(CAMPAIGNS))}
        for name in sorted(names - set(tasks)):
            tasks[name] = asyncio.create_task(serve_campaign(link, name, options, stop, state))
        if not tasks and options.exit_when_done:
            return {}
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait(
            {*tasks.values(), waiter}, timeout=rescan, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        for task in done - {waiter}:
            if not task.cancelled() and task.exception() is not None:
                errors.append(task.exception())  # type: ignore[arg-type]
        if errors:
            stop.set()
            await asyncio.wait(tasks.values())
            raise errors[0]
        finished = all(t.done() for t in tasks.values())
        if stop.is_set() or (options.exit_when_done and finished):
            if tasks:
                await asyncio.wait(tasks.values())
            results = {n: t.result() for n, t in tasks.items() if not t.cancelled()}
            return results


__all__ = [
    "UNPACED",
    "WorkerOptions",
    "WorkerState",
    "account_key",
    "load_campaign",
    "run_worker",
    "serve_campaign",
]

# Errors a worker reports as "cannot start" (exit 2) rather than a crash.
START_ERRORS = (ConfigError, CredentialsError, FleetError)
