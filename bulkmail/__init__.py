"""bulkmail: one signed request per recipient, paced to the account's quota, never losing one.

The public surface is small on purpose (``tests/test_public_api.py`` pins it)::

    import bulkmail
    summary = await bulkmail.run_campaign("campaign.yaml")          # a whole campaign
    async with bulkmail.Sender(provider, rate=14) as sender:        # messages you build
        delivery = await sender.send(bulkmail.Message(...))
"""

from bulkmail.api import CheckReport, check_campaign, load_campaign, run_campaign
from bulkmail.delivery.engine import Summary
from bulkmail.delivery.sender import Delivery, RetryPolicy, Sender, Status
from bulkmail.errors import (
    BulkmailError,
    CampaignStopped,
    ConfigError,
    CredentialsError,
    FatalProviderError,
    JournalError,
    QuotaExhausted,
)
from bulkmail.input.campaign import Campaign
from bulkmail.mail.message import Message
from bulkmail.providers.base import Outcome, Provider, Quota, Verdict
from bulkmail.providers.ses import SesProvider
from bulkmail.signing import AlibabaCredentials, AwsCredentials

__version__ = "0.1.0"

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
    "FatalProviderError",
    "JournalError",
    "Message",
    "Outcome",
    "Provider",
    "Quota",
    "QuotaExhausted",
    "RetryPolicy",
    "Sender",
    "SesProvider",
    "Status",
    "Summary",
    "Verdict",
    "check_campaign",
    "load_campaign",
    "run_campaign",
]
