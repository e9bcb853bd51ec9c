"""The one exception tree of bulkmail.

Per-recipient outcomes are *values* (:class:`bulkmail.providers.base.Outcome`), never
exceptions. An exception means the whole campaign cannot start or cannot go on::

    BulkmailError
    ├── ConfigError(ValueError)          campaign file, recipient list or flag is wrong
    │                                    (names the file, key and line); exit status 2
    ├── CredentialsError                 no usable credentials were found; exit status 2
    ├── JournalError                     the journal cannot be used as asked (content changed,
    │                                    locked by another run); exit status 2
    └── CampaignStopped                  the provider said the campaign cannot go on
        ├── FatalProviderError           bad key or signature, sender not verified, account
        │                                paused: nothing more will succeed
        ├── QuotaExhausted               daily quota used up: resumable later
        ├── InternalError                a bug (ours, or in an injected provider) stopped
        │                                the run; rows in flight count as possibly sent
        └── ProviderUnavailable          the provider could not be reached for
                                         ``outage_wait``: rows stay pending, resumable

Transport failures of a single attempt are mapped to outcomes inside the providers, at the
one boundary where a library's error becomes ours.
"""

from __future__ import annotations


class BulkmailError(Exception):
    """Base of every error bulkmail raises on purpose."""


class ConfigError(BulkmailError, ValueError):
    """The campaign, a recipient list or a command-line flag is wrong.

    The message always names where: ``campaign.yaml: key 'rate': must be a positive number``.

    >>> str(ConfigError("must be a positive number", file="c.yaml", key="rate"))
    "c.yaml: key 'rate': must be a positive number"
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.key = key
        self.line = line
        self.detail = message
        where = []
        if file is not None:
            where.append(f"{file}:{line}" if line is not None else file)
        elif line is not None:
            where.append(f"line {line}")
        if key is not None:
            where.append(f"key {key!r}")
        super().__init__(": ".join([*where, message]))


class CredentialsError(BulkmailError):
    """No credentials could be found in the standard places (the message says which)."""


class JournalError(BulkmailError):
    """The journal cannot be used as asked (changed campaign, another run holds it)."""


class CampaignStopped(BulkmailError):
    """The provider answered in a way that stops the whole campaign; state is saved."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class FatalProviderError(CampaignStopped):
    """Nothing more can succeed: bad key or signature, unverified sender, paused account."""


class QuotaExhausted(CampaignStopped):
    """The daily sending quota is used up; the campaign can be resumed later."""


class InternalError(CampaignStopped):
    """An unexpected exception below the engine stopped the run (a bug, not the provider).

    The recipient being sent stays in flight, so the next run treats it as possibly sent.
    """


class ProviderUnavailable(CampaignStopped):
    """The provider could not be reached through a whole ``outage_wait`` (refused, DNS,
    connect timeouts): nothing was charged to any recipient; run again to resume."""


__all__ = [
    "BulkmailError",
    "CampaignStopped",
    "ConfigError",
    "CredentialsError",
    "FatalProviderError",
    "InternalError",
    "JournalError",
    "ProviderUnavailable",
    "QuotaExhausted",
]
