"""bulkmail: one signed request per recipient, paced to the account's quota, never losing one.

The public surface is small on purpose (``tests/test_public_api.py`` pins it)::

    import bulkmail
    summary = await bulkmail.run_campaign("campaign.yaml")          # a whole campaign
    async with bulkmail.Sender(provider, rate=14) as sender:        # messages you build
        delivery = await sender.send(bulkmail.Message(...))

Importing the package is cheap: the campaign side (YAML, templates, address checks) and the
providers load on first use of a name that needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bulkmail.errors import (
    BulkmailError,
    CampaignStopped,
    ConfigError,
    CredentialsError,
    FatalProviderError,
    JournalError,
    QuotaExhausted,
)
from bulkmail.mail.message import Message
from bulkmail.providers.base import Outcome, Provider, Quota, Verdict

if TYPE_CHECKING:
    from bulkmail.api import check_campaign, load_campaign, run_campaign
    from bulkmail.delivery.progress import Progress, Summary
    from bulkmail.delivery.sender import Delivery, RetryPolicy, Sender, Status
    from bulkmail.input.campaign import Campaign
    from bulkmail.input.check import CheckReport
    from bulkmail.pacing.local import RateLimiter
    from bulkmail.providers.directmail import DirectMailProvider
    from bulkmail.providers.ses import SesProvider
    from bulkmail.providers.smtp import SmtpProvider
    from bulkmail.signing import AlibabaCredentials, AwsCredentials

__version__ = "0.1.0"

#: Names loaded on first use, and the module each comes from.
_LAZY = {
    "run_campaign": "bulkmail.api",
    "check_campaign": "bulkmail.api",
    "load_campaign": "bulkmail.api",
    "Campaign": "bulkmail.input.campaign",
    "CheckReport": "bulkmail.input.check",
    "Progress": "bulkmail.delivery.progress",
    "Summary": "bulkmail.delivery.progress",
    "Delivery": "bulkmail.delivery.sender",
    "RetryPolicy": "bulkmail.delivery.sender",
    "Sender": "bulkmail.delivery.sender",
    "Status": "bulkmail.delivery.sender",
    "RateLimiter": "bulkmail.pacing.local",
    "SesProvider": "bulkmail.providers.ses",
    "DirectMailProvider": "bulkmail.providers.directmail",
    "SmtpProvider": "bulkmail.providers.smtp",
    "AwsCredentials": "bulkmail.signing",
    "AlibabaCredentials": "bulkmail.signing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bulkmail' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AlibabaCredentials",
    "AwsCredentials",
    "BulkmailError",
    "Campaign",
    "CampaignStopped",
    "CheckReport",
    "ConfigError",
    "CredentialsError",
    "Delivery",
    "DirectMailProvider",
    "FatalProviderError",
    "JournalError",
    "Message",
    "Outcome",
    "Progress",
    "Provider",
    "Quota",
    "QuotaExhausted",
    "RateLimiter",
    "RetryPolicy",
    "Sender",
    "SesProvider",
    "SmtpProvider",
    "Status",
    "Summary",
    "Verdict",
    "check_campaign",
    "load_campaign",
    "run_campaign",
]
