"""What one recipient receives: the :class:`Message` handed from rendering to a provider.

A message always has exactly one recipient, so no recipient can ever see another. Everything
that is the same for the whole campaign (sender, reply-to, configuration set, tags) is shared
by reference between messages, so building one per recipient stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bulkmail._frozen import fast_init

_EMPTY: Mapping[str, str] = MappingProxyType({})


@fast_init
@dataclass(slots=True, frozen=True, kw_only=True)
class Message:
    """One email to one recipient.

    >>> m = Message(to="ana@example.com", sender="News <news@example.com>",
    ...             subject="Hi Ana", text="Hello")
    >>> m.cost
    1

    ``headers`` are extra headers (``List-Unsubscribe`` and friends) as ``(name, value)``
    pairs; values never contain CR or LF (rendering refuses them). ``tags`` are SES message
    tags / the DirectMail ``TagName``. ``raw`` is a complete RFC 5322 message when the
    campaign needs raw MIME (attachments); providers then send it instead of ``text``/``html``.
    ``template`` and ``template_data`` select a provider-stored template instead of bodies.
    """

    to: str
    sender: str
    subject: str = ""
    text: str | None = None
    html: str | None = None
    reply_to: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    tags: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    configuration_set: str | None = None
    raw: bytes | None = None
    template: str | None = None
    template_data: str | None = None
    #: Opaque key the caller uses to match an outcome to its recipient (the journal row id).
    key: int | None = None

    @property
    def cost(self) -> int:
        """Recipients this message counts against the quota (always one)."""
        return 1


__all__ = ["Message"]
