"""One registry of providers: a name, the module that builds it, and what it needs.

Adding a provider touches its own module and one line here. Modules are imported only when
a provider is built, so ``import bulkmail`` never loads aiosmtplib::

    provider = build_provider(ProviderSetup(config=config), credentials=None)

Each provider module defines ``from_config(setup, credentials=None) -> Provider``: it reads
its block from :class:`~bulkmail.providers.config.ProviderSetup`, looks its credentials up in
the standard places when none are given, and raises ``ValueError`` for a setting it refuses
(the caller names the key).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from bulkmail.providers.base import Provider
from bulkmail.providers.config import ProviderSetup


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider as the registry knows it.

    >>> REGISTRY["ses"].credentials
    'aws'
    """

    name: str
    module: str
    #: Which test credentials the embedded sandbox hands it.
    credentials: Literal["aws", "alibaba", "none"]
    #: Campaign modes it can run: ``single`` (one call per recipient), ``batch``.
    modes: tuple[str, ...] = ("single",)


REGISTRY: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec("ses", "bulkmail.providers.ses", "aws"),
        ProviderSpec("directmail", "bulkmail.providers.directmail", "alibaba", ("single", "batch")),
        ProviderSpec("smtp", "bulkmail.providers.smtp", "none"),
    )
}
PROVIDER_NAMES = tuple(REGISTRY)


def build_provider(setup: ProviderSetup, *, credentials: Any = None) -> Provider:
    """The provider ``setup.config.name`` names, built (not yet entered)."""
    spec = REGISTRY.get(setup.config.name)
    if spec is None:
        raise ValueError(f"unknown provider {setup.config.name!r}")
    module = importlib.import_module(spec.module)
    provider: Provider = module.from_config(setup, credentials=credentials)
    return provider


__all__ = ["PROVIDER_NAMES", "REGISTRY", "ProviderSpec", "build_provider"]
