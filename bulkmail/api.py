"""The importable async API: run or check a campaign file. The CLI is a thin layer over it.

>>> import asyncio, bulkmail                                           # doctest: +SKIP
>>> summary = asyncio.run(bulkmail.run_campaign("examples/campaign.yaml"))
>>> summary.counts["sent"]
100
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bulkmail.books.journal import BENIGN_SKIP_CODES, Journal
from bulkmail.credentials import alibaba_from_env, aws_from_env
from bulkmail.delivery.batch import run_batch_campaign
from bulkmail.delivery.engine import CampaignRun, Progress, Summary
from bulkmail.errors import ConfigError, CredentialsError, FatalProviderError
from bulkmail.input.campaign import Campaign
from bulkmail.input.compose import Composer
from bulkmail.input.recipients import Recipient, read_recipients, read_suppressed
from bulkmail.input.render import RenderProblem
from bulkmail.providers.base import Provider
from bulkmail.providers.directmail import DirectMailProvider
from bulkmail.signing import AlibabaCredentials, AwsCredentials


@contextlib.asynccontextmanager
async def open_provider(campaign: Campaign) -> AsyncIterator[Provider]:
    """Build the campaign's provider (not yet entered); ``endpoint: sandbox`` starts the
    embedded sandbox in-process for as long as the block runs, with its outbox in
    ``outbox/`` beside the campaign file."""
    if campaign.provider.endpoint == "sandbox":
        from bulkmail.servers.sandbox import SANDBOX_ALIBABA, SANDBOX_AWS, Sandbox

        outbox = campaign.path.parent / "outbox"
        outbox.mkdir(exist_ok=True)
        async with Sandbox(outbox=outbox) as sandbox:
            yield make_provider(
                campaign, endpoint=sandbox.url, aws=SANDBOX_AWS, alibaba=SANDBOX_ALIBABA
            )
        return
    yield make_provider(campaign)


def make_provider(
    campaign: Campaign,
    *,
    endpoint: str | None = None,
    aws: AwsCredentials | None = None,
    alibaba: AlibabaCredentials | None = None,
    environ: Mapping[str, str] | None = None,
) -> Provider:
    """The provider a campaign names, with credentials from the standard places.

    A provider's own refusal of a setting (unknown region, alias too long) becomes a
    :class:`ConfigError` naming the key, so nothing is sent.
    """
    config = campaign.provider
    endpoint = endpoint or config.endpoint
    concurrency = campaign.concurrency or 512
    try:
        if config.name == "ses":
            from bulkmail.providers.ses import SesProvider

            api: Literal["v2", "v1"] = "v1" if config.api == "v1" else "v2"
            return SesProvider(
                credentials=aws or aws_from_env(environ),
                region=config.region or "us-east-1",
                endpoint=endpoint,
                api=api,
                max_connections=concurrency,
                v2_extra=_ses_v2_extra(campaign),
                v1_extra=_ses_v1_extra(campaign),
            )
        if config.name == "directmail":
            options = campaign.directmail
            return DirectMailProvider(
                credentials=alibaba or alibaba_from_env(environ),
                region=config.region or "cn-hangzhou",
                endpoint=endpoint,
                version=config.version,
                max_connections=concurrency,
                address_type=int(options.get("address_type", 1)),
                click_trace=options.get("click_trace"),
                tag_name=options.get("tag_name"),
            )
        if config.name == "smtp":
            return _smtp_provider(campaign, environ)
    except ValueError as exc:
        raise ConfigError(str(exc), file=str(campaign.path), key="provider") from None
    raise ConfigError(
        f"unknown provider {config.name!r}", file=str(campaign.path), key="provider.name"
    )


def _ses_v2_extra(campaign: Campaign) -> dict[str, str]:
    extra = {
        "FromEmailAddressIdentityArn": campaign.from_arn or campaign.source_arn,
        "FeedbackForwardingEmailAddress": campaign.return_path,
        "FeedbackForwardingEmailAddressIdentityArn": campaign.return_path_arn,
    }
    return {k: v for k, v in extra.items() if v}


def _ses_v1_extra(campaign: Campaign) -> dict[str, str]:
    extra = {
        "SourceArn": campaign.source_arn,
        "FromArn": campaign.from_arn,
        "ReturnPathArn": campaign.return_path_arn,
        "ReturnPath": campaign.return_path,
    }
    return {k: v for k, v in extra.items() if v}


def _smtp_provider(campaign: Campaign, environ: Mapping[str, str] | None) -> Provider:
    import os

    from bulkmail.providers.smtp import SmtpProvider, ses_smtp_credentials

    config = campaign.provider
    assert config.host is not None and config.port is not None
    env = os.environ if environ is None else environ
    username, password = config.username, None
    if config.password_env:
        password = env.get(config.password_env)
        if not password:
            raise CredentialsError(
                f"the SMTP password variable {config.password_env} (provider.password_env) "
                "is not set"
            )
    elif username is not None:
        raise ConfigError(
            "provider.username needs provider.password_env: the name of the environment "
            "variable that holds the SMTP password",
            file=str(campaign.path),
            key="provider.password_env",
        )
    elif config.host.lower().startswith("email-smtp."):
        # SES SMTP with only an access key pair: derive the SMTP password ourselves.
        creds = aws_from_env(environ)
        if creds.session_token:
            # The SMTP password carries no session token, so SES refuses one derived from
            # temporary (STS, SSO, instance role) keys; it needs an IAM user's own key.
            raise CredentialsError(
                "SES SMTP needs an IAM user's long-term access key, not temporary credentials "
                "(AWS_SESSION_TOKEN is set); or set provider.username and "
                "provider.password_env from 'bulkmail smtp-password'"
            )
        region = config.region or config.host.split(".")[1].lower()
        username, password = ses_smtp_credentials(
            creds.access_key_id, creds.secret_access_key, region
        )
    return SmtpProvider(
        host=config.host,
        port=config.port,
        tls=config.tls,  # type: ignore[arg-type]
        username=username,
        password=password,
        pool_size=config.pool,
        return_path=campaign.return_path,
    )


def load_campaign(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Campaign:
    """Parse and validate a campaign file; raises :class:`ConfigError` naming what is wrong."""
    return Campaign.from_file(path, overrides=overrides)


async def run_campaign(
    campaign: Campaign | str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    on_change: Literal["refuse", "restart", "force"] = "refuse",
    at_most_once: bool = False,
    stop: asyncio.Event | None = None,
    grace: float = 10.0,
    on_start: Callable[[Progress], None] | None = None,
    provider: Provider | None = None,
) -> Summary:
    """Run (or resume) a campaign and return its :class:`Summary`.

    ``provider`` may be injected (tests, custom transports); otherwise it is built from the
    campaign. ``on_start`` receives the live :class:`Progress` once sending begins.
    """
    if not isinstance(campaign, Campaign):
        campaign = load_campaign(campaign, overrides)
    async with contextlib.AsyncExitStack() as stack:
        if provider is None:
            provider = await stack.enter_async_context(open_provider(campaign))
        await stack.enter_async_context(_entered(provider))
        if campaign.directmail.get("mode") == "batch" and isinstance(provider, DirectMailProvider):
            batch = await run_batch_campaign(
                campaign, provider, results=campaign.results, stop=stop
            )
            return batch.as_summary()
        rate, daily_limit = campaign.rate, campaign.daily_limit
        if rate is None:
            try:
                quota = await provider.get_quota()
            except OSError as exc:  # ConnectionError / PermissionError from the provider
                raise FatalProviderError(f"rate: auto could not read the quota: {exc}") from None
            if quota is None:
                raise ConfigError(
                    "rate: auto needs a provider that reports its quota; set a number",
                    file=str(campaign.path),
                    key="rate",
                )
            rate = quota.max_send_rate
            remaining = quota.remaining_today
            if remaining is not None:
                if remaining < 1:
                    raise FatalProviderError(
                        "the account's 24-hour quota is used up; resume later", code="DailyQuota"
                    )
                daily_limit = int(min(daily_limit or remaining, remaining))
        run = CampaignRun(
            campaign,
            provider,
            rate=rate,
            on_change=on_change,
            at_most_once=at_most_once,
            stop=stop,
            grace=grace,
            daily_limit=daily_limit,
        )
        if on_start is not None:
            on_start(run.progress)
        return await run.run()
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.asynccontextmanager
async def _entered(provider: Provider) -> AsyncIterator[Provider]:
    await provider.__aenter__()
    try:
        yield provider
    finally:
        await provider.__aexit__(None, None, None)


@dataclass(slots=True)
class CheckReport:
    """What ``bulkmail check`` found: would-send count and every problem row (first few)."""

    campaign: str
    rows: int = 0
    would_send: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return sum(n for code, n in self.skipped.items() if code not in BENIGN_SKIP_CODES)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "rows": self.rows,
            "would_send": self.would_send,
            "skipped": dict(self.skipped),
            "problems": self.problems,
            "examples": self.examples,
            "variables": self.variables,
        }


def check_campaign(
    campaign: Campaign | str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    max_examples: int = 20,
) -> CheckReport:
    """Validate the campaign and every recipient row without sending anything.

    Uses a throw-away journal for duplicate detection, so memory stays flat on any list size.
    """
    if not isinstance(campaign, Campaign):
        campaign = load_campaign(campaign, overrides)
    composer = Composer.for_campaign(campaign)
    report = CheckReport(campaign=campaign.name, variables=sorted(composer.variables))

    def note(line: int, email: str, code: str, reason: str) -> None:
        report.skipped[code] += 1
        if len(report.examples) < max_examples:
            report.examples.append({"line": line, "email": email, "code": code, "reason": reason})

    with tempfile.TemporaryDirectory(prefix="bulkmail-check-") as tmp:
        journal, _ = Journal.open(Path(tmp) / "check.sqlite", campaign_hash="", list_hash="")
        with journal:
            if campaign.suppress is not None:
                journal.load_suppressed(read_suppressed(campaign.suppress))
            chunk: list[Recipient] = []
            rejected: list[Any] = []

            def flush(last: bool, through: int) -> None:
                for row in journal.add_rows(chunk, rejected, through_line=through, last=last):
                    rendered = composer.compose(
                        Recipient(line=row.line, email=row.email, key="", fields=row.fields)
                    )
                    if isinstance(rendered, RenderProblem):
                        note(row.line, row.email, rendered.code, rendered.reason)
                    else:
                        report.would_send += 1
                chunk.clear()
                rejected.clear()

            line = 0
            for item in read_recipients(campaign.recipients):
                report.rows += 1
                line = item.line
                if isinstance(item, Recipient):
                    chunk.append(item)
                else:
                    rejected.append(item)
                    note(item.line, item.email, item.code, item.reason)
                if len(chunk) + len(rejected) >= 1000:
                    flush(False, line)
            flush(True, line)
            for skip in journal.skips(codes=BENIGN_SKIP_CODES):
                note(skip["line"], skip["email"], skip["code"], skip["reason"])
    return report
