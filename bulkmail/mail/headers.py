"""Header rules shared by everything that writes a message: names, and the reserved ones.

>>> bool(HEADER_NAME.fullmatch("X-Campaign")), bool(HEADER_NAME.fullmatch("Bad Name"))
(True, False)
>>> RESERVED_HEADERS["return-path"]
'return_path'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

#: A header name: printable ASCII except ':' (RFC 5322 ftext).
HEADER_NAME = re.compile(r"[!-9;-~]+")

#: Headers bulkmail writes itself, or that would add recipients; each maps to the campaign
#: key that sets it (``None``: bulkmail sets it itself). ``Return-Path`` is the envelope
#: sender, set by the ``return_path`` key, never by a header.
RESERVED_HEADERS: Mapping[str, str | None] = MappingProxyType(
    {
        "from": "from",
        "to": "recipients",
        "cc": "recipients",
        "bcc": "recipients",
        "subject": "subject",
        "reply-to": "reply_to",
        "return-path": "return_path",
        "list-unsubscribe": "unsubscribe",
        "list-unsubscribe-post": "unsubscribe",
        "date": None,
        "message-id": None,
        "mime-version": None,
        "content-type": None,
        "content-transfer-encoding": None,
        "sender": None,
    }
)

__all__ = ["HEADER_NAME", "RESERVED_HEADERS"]
