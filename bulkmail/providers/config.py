"""What a provider builds itself from: its validated config block and the send-wide options.

The input side (a campaign file, the proxy's file) validates the ``provider:`` block into a
:class:`ProviderConfig` and hands a :class:`ProviderSetup` to the registry
(:mod:`bulkmail.providers.registry`); the provider module's ``from_config`` builds itself from
it. Nothing here knows a campaign.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderConfig:
    """Where and how to send: ``ses`` | ``directmail`` | ``smtp``, with defaults filled in.

    For SMTP the host presets ``ses`` and ``directmail`` are resolved to the real host name
    for ``region`` (``email-smtp.us-east-1.amazonaws.com``, ``smtpdm.aliyun.com``), and ``port``
    defaults from ``tls`` (587 starttls, 465 implicit, 25 none).
    """

    name: str
    region: str | None
    endpoint: str | None  # None: the provider's public endpoint; "sandbox": embedded emulator
    api: str = "v2"
    version: str = "2015-11-23"
    host: str | None = None
    port: int | None = None
    tls: str = "starttls"
    username: str | None = None
    password_env: str | None = None
    pool: int = 4


@dataclass(frozen=True, kw_only=True, slots=True)
class Identity:
    """Sending-authorization ARNs and the bounce address, when the sender sets them.

    >>> Identity(return_path="bounces@example.com").return_path
    'bounces@example.com'
    """

    source_arn: str | None = None
    from_arn: str | None = None
    return_path: str | None = None
    return_path_arn: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderSetup:
    """Everything a provider's ``from_config`` reads.

    >>> setup = ProviderSetup(config=ProviderConfig(name="ses", region="eu-west-1",
    ...                                             endpoint=None))
    >>> setup.max_connections
    512

    ``options`` is the provider's own block (``directmail:``); ``endpoint`` overrides the
    config's (the embedded sandbox); ``environ`` is where credentials are looked up
    (``None``: the process environment).
    """

    config: ProviderConfig
    identity: Identity = field(default_factory=Identity)
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    max_connections: int = 512
    endpoint: str | None = None
    environ: Mapping[str, str] | None = None

    @property
    def url(self) -> str | None:
        """The endpoint to use: the override, else the config's."""
        return self.endpoint or self.config.endpoint


__all__ = ["Identity", "ProviderConfig", "ProviderSetup"]
