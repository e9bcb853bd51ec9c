"""The importable async API: assembly only. The CLI is a thin layer over it.

:func:`run_campaign` puts the pipeline together for a campaign file — the provider from the
registry, the journal as books, the list file as intake, the local limiter as pacer — and
runs it; nothing here knows one provider from another.

>>> import asyncio, bulkmail                                           # doctest: +SKIP
>>> summary = asyncio.run(bulkmail.run_campaign("examples/campaign.yaml"))
>>> summary.counts["sent"]
100
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bulkmail.books.base import PendingRow
from bulkmail.delivery.engine import CampaignRun, Compose
from bulkmail.delivery.guards import Guard
from bulkmail.delivery.progress import Progress, Summary
from bulkmail.delivery.quota import resolve_rate
from bulkmail.delivery.sender import RetryPolicy, Sender
from bulkmail.errors import ConfigError
from bulkmail.input.campaign import Campaign
from bulkmail.input.check import CheckReport, check_campaign, load_campaign
from bulkmail.input.compose import Composer
from bulkmail.input.recipients import Recipient, list_fingerprint, read_recipients
from bulkmail.pacing.base import Pacer
from bulkmail.providers.base import Provider
from bulkmail.providers.registry import REGISTRY, build_provider

if TYPE_CHECKING:
    from bulkmail.books.journal import RetryFailed
    from bulkmail.deliverability.guard import DeliverabilityGuard

#: Rows per intake batch, journal transaction and dispatch step.
CHUNK = 500


@contextlib.asynccontextmanager
async def open_provider(campaign: Campaign) -> AsyncIterator[Provider]:
    """Build the campaign's provider (not yet entered); ``endpoint: sandbox`` starts the
    embedded sandbox in-process for as long as the block runs, with its outbox in
    ``outbox/`` beside the campaign file."""
    if campaign.provider.endpoint == "sandbox":
        from bulkmail.servers.sandbox import SANDBOX_ALIBABA, SANDBOX_AWS, Sandbox

        outbox = campaign.path.parent / "outbox"
        outbox.mkdir(exist_ok=True)
        kind = REGISTRY[campaign.provider.name].credentials
        test_keys = {"aws": SANDBOX_AWS, "alibaba": SANDBOX_ALIBABA}.get(kind)
        async with Sandbox(outbox=outbox) as sandbox:
            yield make_provider(campaign, endpoint=sandbox.url, credentials=test_keys)
        return
    yield make_provider(campaign)


def make_provider(
    campaign: Campaign,
    *,
    endpoint: str | None = None,
    credentials: Any = None,
    aws: Any = None,
    alibaba: Any = None,
    environ: Mapping[str, str] | None = None,
) -> Provider:
    """The provider a campaign names, through the registry, with credentials from the
    standard places unless given (``aws``/``alibaba`` name them by kind).

    A provider's own refusal of a setting (unknown region, alias too long) becomes a
    :class:`ConfigError` naming the key, so nothing is sent.
    """
    kind = (
        REGISTRY[campaign.provider.name].credentials if campaign.provider.name in REGISTRY else ""
    )
    credentials = credentials or {"aws": aws, "alibaba": alibaba}.get(kind)
    file = str(campaign.path)
    try:
        setup = campaign.provider_setup(endpoint=endpoint, environ=environ)
        return build_provider(setup, credentials=credentials)
    except ConfigError as exc:
        raise ConfigError(exc.detail, file=file, key=exc.key, line=exc.line) from None
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, key="provider") from None


async def run_campaign(
    campaign: Campaign | str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    on_change: Literal["refuse", "restart", "force"] = "refuse",
    at_most_once: bool = False,
    retry_failed: RetryFailed = "none",
    stop: asyncio.Event | None = None,
    grace: float = 10.0,
    on_start: Callable[[Progress], None] | None = None,
    provider: Provider | None = None,
    pacer: Pacer | None = None,
    guards: Sequence[Guard] = (),
) -> Summary:
    """Run (or resume) a campaign and return its :class:`Summary`.

    ``at_most_once`` is the campaign's delivery guarantee, fixed at its first run (another
    value later raises :class:`~bulkmail.errors.JournalError`). ``retry_failed`` sends again
    the rows an earlier run marked failed: ``"retryable"`` those that failed for a reason a
    later run may not meet (transport, 5xx, throttling), ``"all"`` also those the provider
    refused. ``provider`` and ``pacer`` may be injected (tests, custom transports, a shared
    limiter); otherwise they are built from the campaign. ``on_start`` receives the live
    :class:`Progress` once sending begins; ``guards`` may pause the run.
    """
    if not isinstance(campaign, Campaign):
        campaign = load_campaign(campaign, overrides)
    async with contextlib.AsyncExitStack() as stack:
        if provider is None:
            provider = await stack.enter_async_context(open_provider(campaign))
        provider, floor = _bulk_if_possible(campaign, provider)
        await stack.enter_async_context(_entered(provider))
        if campaign.mode == "batch":
            from bulkmail.delivery.batch import run_batch_campaign

            if not hasattr(provider, "batch_send"):
                raise ConfigError(
                    "directmail.mode: batch needs the DirectMail provider",
                    file=str(campaign.path),
                    key="directmail.mode",
                )
            batch = await run_batch_campaign(
                campaign,
                provider,  # type: ignore[arg-type]
                results=campaign.results,
                stop=stop,
            )
            return batch.as_summary()
        rate, daily_limit = await resolve_rate(
            provider, campaign.rate, campaign.daily_limit, file=str(campaign.path)
        )
        sender = Sender(
            provider,
            rate=rate,
            retry=RetryPolicy(max_attempts=campaign.max_attempts),
            at_most_once=at_most_once,
            max_concurrency=campaign.concurrency or 512,
            # concurrency: N is the user's tuning: N in flight, not sized by the gate.
            min_concurrency=campaign.concurrency or floor,
            limiter=pacer,
            outage_wait=campaign.outage_wait,
        )
        deliverability: list[DeliverabilityGuard] = []
        if campaign.events is not None and campaign.guard is not None:
            # Imported only for a campaign with a guard: the journal reader and the event
            # store it pulls in took 10-20 ms of every other run's start.
            from bulkmail.deliverability.guard import campaign_guard

            deliverability = campaign_guard(campaign)  # its own bounce/complaint rates
        try:
            return await _run_list(
                campaign,
                sender,
                on_change=on_change,
                at_most_once=at_most_once,
                retry_failed=retry_failed,
                stop=stop,
                grace=grace,
                on_start=on_start,
                daily_limit=daily_limit,
                guards=(*guards, *deliverability),
            )
        finally:
            for guard in deliverability:
                guard.close()
    raise AssertionError("unreachable")  # pragma: no cover


async def _run_list(
    campaign: Campaign,
    sender: Sender,
    *,
    on_change: Literal["refuse", "restart", "force"],
    at_most_once: bool,
    retry_failed: RetryFailed,
    stop: asyncio.Event | None,
    grace: float,
    on_start: Callable[[Progress], None] | None,
    daily_limit: int | None,
    guards: Sequence[Guard],
) -> Summary:
    """The campaign's list file through the engine, with the journal as its books."""
    composer = Composer.for_campaign(campaign)
    await asyncio.to_thread(composer.check_list, campaign)  # a column no row has: exit 2
    # Whole-file problems (missing file, no email column) surface here, before the journal
    # exists and before anything is sent. The suppression file is not part of the list's
    # hash: it may grow between runs (it is read again on every run) without --force.
    list_hash = await asyncio.to_thread(_preflight, campaign.recipients)
    # Imported here, not at the top: a fleet worker uses this module but no journal.
    from bulkmail.books.sqlite import SqliteBooks
    from bulkmail.intake.listfile import ListIntake

    books = await SqliteBooks.open(
        campaign.journal,
        campaign_hash=campaign.content_hash(),
        list_hash=list_hash,
        on_change=on_change,
        at_most_once=at_most_once,
        retry_failed=retry_failed,
    )
    try:
        run = CampaignRun(
            intake=ListIntake(books, campaign.recipients, suppress=campaign.suppress, chunk=CHUNK),
            books=books,
            compose=_compose_rows(composer),
            sender=sender,
            name=campaign.name,
            recovery=books.recovery,
            stop=stop,
            grace=grace,
            chunk=CHUNK,
            queue_depth=_queue_depth(composer),
            daily_limit=daily_limit,
            guards=guards,
        )
        sender.breaker.on_pause = functools.partial(setattr, run.progress, "paused")
        if on_start is not None:
            on_start(run.progress)
        if campaign.events is None:  # event fields are joined in at the end, in one read
            await books.stream_results(campaign.results)
        summary = await run.run()
        await books.export_results(campaign.results, events=campaign.events)
        return replace(summary, results=str(campaign.results), journal=str(campaign.journal))
    finally:
        await books.close()


def _bulk_if_possible(campaign: Campaign, provider: Provider) -> tuple[Provider, int]:
    """A stored-template campaign goes through bulk calls when the provider has them
    (SESv2 ``SendBulkEmail``), unless the campaign says ``bulk: false``; with the fewest
    requests the gate keeps in flight (two full calls' worth for bulk, so one can fill
    while the other is answered)."""
    if campaign.template is None or not campaign.bulk or campaign.mode == "batch":
        return provider, 32
    if not callable(getattr(provider, "send_bulk", None)):
        return provider, 32
    from bulkmail.delivery.bulk import BulkSender

    bulk = BulkSender(provider)  # type: ignore[arg-type]
    return bulk, 2 * bulk.size


def _preflight(recipients: Path) -> str:
    next(iter(read_recipients(recipients)), None)
    return list_fingerprint(recipients)


def _compose_rows(composer: Composer) -> Compose:
    def compose(row: PendingRow) -> Any:
        recipient = Recipient(line=row.line, email=row.email, key="", fields=row.fields)
        return composer.compose(recipient, key=row.id)

    return compose


def _queue_depth(composer: Composer) -> int:
    # Raw messages are built when composed: bound what waits in the queue by bytes too
    # (64 MiB), so a campaign with a 10 MB attachment cannot hold gigabytes ahead.
    size = composer.raw_size_hint
    return 4 * CHUNK if size is None else max(16, min(4 * CHUNK, (64 << 20) // size))


@contextlib.asynccontextmanager
async def _entered(provider: Provider) -> AsyncIterator[Provider]:
    await provider.__aenter__()
    try:
        yield provider
    finally:
        await provider.__aexit__(None, None, None)


__all__ = [
    "CheckReport",
    "check_campaign",
    "load_campaign",
    "make_provider",
    "open_provider",
    "run_campaign",
]
