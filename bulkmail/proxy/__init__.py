"""The SES-API proxy: existing applications send through it unchanged, and every message
becomes one message per recipient, accepted durably and paced to the account's quota.

>>> from bulkmail.proxy import ProxyConfig                            # doctest: +SKIP
>>> config = ProxyConfig.from_file("PROXY.yaml")
"""

from __future__ import annotations

from bulkmail.proxy.config import ProxyConfig
from bulkmail.proxy.server import Proxy, run_proxy

__all__ = ["Proxy", "ProxyConfig", "run_proxy"]
