"""From a recipient row to the finished :class:`~bulkmail.message.Message` a provider sends.

Rendering (:mod:`bulkmail.render`) fills the templates; composing adds what depends on the
campaign's sending mode: raw MIME when there are attachments, provider-stored templates,
delegated-sending headers. Everything that does not depend on the recipient is prepared
once, in :meth:`Composer.for_campaign`.
"""

from __future__ import annotations

from bulkmail.campaign import Campaign
from bulkmail.message import Message
from bulkmail.recipients import Recipient
from bulkmail.render import Renderer, RenderProblem


class Composer:
    """Turns recipient rows into messages for one campaign.

    >>> composer = Composer.for_campaign(campaign)                    # doctest: +SKIP
    >>> composer.compose(recipient, key=7)                             # doctest: +SKIP
    Message(to='ana@example.com', ...)
    """

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer

    @classmethod
    def for_campaign(cls, campaign: Campaign) -> Composer:
        return cls(
            Renderer(
                sender=campaign.sender,
                subject=campaign.subject,
                text=campaign.text,
                html=campaign.html,
                reply_to=campaign.reply_to,
                headers=campaign.headers,
                unsubscribe_url=campaign.unsubscribe_url,
                unsubscribe_mailto=campaign.unsubscribe_mailto,
                tags=campaign.tags,
                configuration_set=campaign.configuration_set,
                sources=campaign.sources,
            )
        )

    @property
    def variables(self) -> frozenset[str]:
        return self.renderer.variables

    def compose(self, recipient: Recipient, *, key: int | None = None) -> Message | RenderProblem:
        return self.renderer.render(recipient, key=key)
