"""campaign.yaml -> a validated :class:`Campaign`, or one :class:`ConfigError` listing all problems.

Nothing is sent unless the whole file is right, so everything that can be checked before the
first request is checked here: YAML syntax, key names (with a "did you mean"), types and ranges,
address syntax, CR/LF in header values, and that every file it names exists, is a file, can be
read and (for bodies) is UTF-8. Each problem names the file, the dotted key and the YAML line::

    campaign.yaml:7: key 'subjet': unknown key; did you mean 'subject'?
    campaign.yaml:3: key 'provider.region': must look like 'us-east-1', got 'US East'

Credentials never live in the campaign: a key that looks like one is refused, without echoing
its value, because credentials come from the environment.

The generic machinery (YAML with line numbers, value checkers, the problem collector) lives in
:mod:`bulkmail.input._yamlconfig`, the provider rules (``provider:``, ``directmail:``,
which keys each provider takes) in :mod:`bulkmail.input._providerconfig`, the campaign's other
keys and rules in :mod:`bulkmail.input._campaignchecker`; this module holds the validated
:class:`Campaign` itself.

>>> campaign = Campaign.from_file("examples/campaign.yaml", overrides={"rate": 5})  # doctest: +SKIP
>>> campaign.rate, campaign.results.name                                            # doctest: +SKIP
(5.0, 'campaign.results.jsonl')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkmail.deliverability.settings import GuardSettings
from bulkmail.errors import ConfigError
from bulkmail.input._campaignchecker import (
    MAX_ATTACHMENT_BYTES,
    MAX_BODY_BYTES,
    CampaignChecker,
)
from bulkmail.input._campaignchecker import duration as duration  # re-exported: it lived here
from bulkmail.input._yamlconfig import load_yaml
from bulkmail.providers.config import Identity, ProviderConfig, ProviderSetup


@dataclass(frozen=True, kw_only=True, slots=True)
class Campaign:
    """A validated campaign; build it with :meth:`from_file`.

    ``text``/``html`` hold the template *source* (files already read); ``sources`` says where
    each part came from, for error messages. Paths are absolute. ``rate`` ``None`` means
    ``auto`` (ask the provider for its quota).

    >>> c = Campaign.from_file("examples/campaign.yaml")        # doctest: +SKIP
    >>> c.provider.name, c.sources["text"]                       # doctest: +SKIP
    ('ses', 'examples/news.txt')
    """

    path: Path
    name: str
    provider: ProviderConfig
    rate: float | None
    daily_limit: int | None
    concurrency: int | None
    max_attempts: int
    #: Seconds to wait out a provider that cannot be reached before stopping (rows pending).
    outage_wait: float = 600.0
    sender: str
    reply_to: tuple[str, ...]
    subject: str
    text: str | None
    html: str | None
    sources: Mapping[str, str]
    recipients: Path
    suppress: Path | None
    results: Path
    journal: Path
    configuration_set: str | None
    tags: Mapping[str, str]
    headers: Mapping[str, str]
    unsubscribe_url: str | None
    unsubscribe_mailto: str | None
    template: str | None
    attachments: tuple[Path, ...]
    attachment_column: str | None
    source_arn: str | None
    from_arn: str | None
    return_path_arn: str | None
    return_path: str | None
    directmail: Mapping[str, Any]
    #: The event store of ``bulkmail events`` (results ``event`` field, report, guard).
    events: Path | None = None
    guard: GuardSettings | None = None  # set whenever ``events`` is
    #: Stored-template sends may share one bulk call (SESv2 ``SendBulkEmail``); default on.
    bulk: bool = True

    @property
    def mode(self) -> str:
        """``single`` (one call per recipient) or ``batch`` (DirectMail console lists)."""
        return str(self.directmail.get("mode", "single"))

    def provider_setup(
        self, *, endpoint: str | None = None, environ: Mapping[str, str] | None = None
    ) -> ProviderSetup:
        """What the provider registry builds this campaign's provider from."""
        return ProviderSetup(
            config=self.provider,
            identity=Identity(
                source_arn=self.source_arn,
                from_arn=self.from_arn,
                return_path=self.return_path,
                return_path_arn=self.return_path_arn,
            ),
            options=self.directmail,
            max_connections=self.concurrency or 512,
            endpoint=endpoint,
            environ=environ,
        )

    @classmethod
    def from_file(cls, path: Path | str, *, overrides: Mapping[str, Any] | None = None) -> Campaign:
        """Read and validate ``path``; ``overrides`` (CLI flags ``rate``, ``endpoint``,
        ``results``, ``journal``, ``concurrency``) win over the file. Relative paths in the file
        are relative to its directory; relative override paths to the working directory.

        Raises :class:`ConfigError`: the one problem found, or one listing all of them.
        """
        display = str(path)
        file = Path(path).expanduser()
        data, lines = load_yaml(file, display, what="campaign", max_bytes=MAX_BODY_BYTES)
        checker = CampaignChecker(display, file.resolve(), lines)
        fields = checker.campaign(data, dict(overrides or {}))
        checker.raise_problems()
        return cls(**fields)

    def content_hash(self) -> str:
        """sha256 hex of everything that changes what a recipient receives.

        Operational knobs (rate, endpoint, region, results, journal, concurrency, limits) are
        left out, so an operator may change them between runs of the same campaign.
        """
        p = self.provider
        doc = {
            "provider": p.name,
            "api": p.api if p.name == "ses" else None,
            "version": p.version if p.name == "directmail" else None,
            "sender": self.sender,
            "reply_to": list(self.reply_to),
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "headers": dict(self.headers),
            "unsubscribe": [self.unsubscribe_url, self.unsubscribe_mailto],
            "template": self.template,
            "tags": dict(self.tags),
            "configuration_set": self.configuration_set,
            "arns": [self.source_arn, self.from_arn, self.return_path_arn],
            "return_path": self.return_path,
            "attachment_column": self.attachment_column,
            "directmail": dict(self.directmail),
            "attachments": [[a.name, _file_digest(a, self.path)] for a in self.attachments],
        }
        blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _file_digest(path: Path, campaign: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ConfigError(
            f"attachment {str(path)!r} cannot be read: {exc.strerror}",
            file=str(campaign),
            key="attachments",
        ) from exc
    return digest.hexdigest()


__all__ = ["MAX_ATTACHMENT_BYTES", "MAX_BODY_BYTES", "Campaign", "ProviderConfig"]
