"""The campaign's ``provider:`` and ``directmail:`` blocks -> a :class:`ProviderConfig`.

Which provider (``ses`` | ``directmail`` | ``smtp``) a campaign sends through decides which keys
it may use: under ``provider:`` (``region`` and ``endpoint`` for the APIs, ``api`` for SES,
``version`` for DirectMail, ``host``/``port``/``tls``/``username``/``password_env``/``pool`` for
SMTP), at the top level (SES-only ``template``, DirectMail-only ``directmail:``...) and in the
``directmail:`` block itself. SMTP's ``host: ses`` / ``host: directmail`` presets are resolved
through :data:`bulkmail.providers.smtp.SMTP_PRESETS`.

:class:`ProviderChecker` adds these rules to the generic
:class:`~bulkmail.input._yamlconfig.Checker`;
:mod:`bulkmail.input._campaignchecker` builds the campaign's checker on top of it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from bulkmail.input._yamlconfig import (
    Bad,
    Checker,
    choice,
    describe,
    integer,
    one_line,
    pattern,
)
from bulkmail.providers.config import ProviderConfig
from bulkmail.providers.registry import PROVIDER_NAMES

PROVIDERS = PROVIDER_NAMES
#: Which providers each key applies to (the others refuse it); top level, then under provider.
TOP_KEY_PROVIDERS = {
    "configuration_set": ("ses", "smtp"), "tags": ("ses", "smtp"), "return_path": ("ses", "smtp"),
    "template": ("ses",), "source_arn": ("ses", "smtp"), "from_arn": ("ses", "smtp"),
    "return_path_arn": ("ses", "smtp"), "directmail": ("directmail",),
}  # fmt: skip
PROVIDER_KEYS: dict[str, tuple[str, ...]] = {
    "name": PROVIDERS,
    "region": PROVIDERS,
    "endpoint": ("ses", "directmail"),
    "api": ("ses",),
    "version": ("directmail",),
    **{k: ("smtp",) for k in ("host", "port", "tls", "username", "password_env", "pool")},
}
DIRECTMAIL_KEYS = ("address_type", "click_trace", "tag_name", "mode", "template_name",
                   "receivers_name")  # fmt: skip
_REGION = pattern(r"[a-z]{2,}(-[a-z0-9]+)+", "must look like 'us-east-1' or 'cn-hangzhou'")
_ENV_NAME = pattern(r"[A-Za-z_][A-Za-z0-9_]*", "must be an environment variable name")
_HOST = pattern(
    r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\]", "must be a host name, 'ses' or 'directmail'"
)


class ProviderChecker(Checker):
    """The provider rules, on top of the generic :class:`Checker`."""

    def provider(self, raw: Any, flags: dict[str, Any]) -> ProviderConfig | None:
        """The ``provider:`` block (or bare name); ``flags["endpoint"]`` wins over the file."""
        if raw is None:
            self.bad("provider", "is required (name: ses | directmail | smtp)")
            return None
        m = self.mapping(
            {"name": raw} if isinstance(raw, str) else raw, "provider", tuple(PROVIDER_KEYS)
        )
        name = self.require(m, "provider.name", choice(*PROVIDERS))
        if name is None:
            return None
        for key in list(m):
            if name not in PROVIDER_KEYS[key]:
                owners = " or ".join(PROVIDER_KEYS[key])
                self.bad(f"provider.{key}", f"applies only to provider {owners}, not {name}")
                del m[key]
        region = self.get(m, "provider.region", _REGION)
        endpoint = self.get(m, "provider.endpoint", endpoint_url)
        if "endpoint" in flags:
            if name == "smtp":
                self.bad("--endpoint", "does not apply to provider smtp (set provider.host)")
            endpoint = flags["endpoint"]
        common: dict[str, Any] = {"name": name, "endpoint": endpoint}
        if name == "ses":
            api = self.get(m, "provider.api", choice("v2", "v1"))
            return ProviderConfig(**common, region=region or "us-east-1", api=api or "v2")
        if name == "directmail":
            version = self.get(m, "provider.version", choice("2015-11-23", "2017-06-22"))
            return ProviderConfig(
                **common, region=region or "cn-hangzhou", version=version or "2015-11-23"
            )
        from bulkmail.providers._smtp_replies import SMTP_PRESETS  # smtp only (~5 ms)

        host = self.require(m, "provider.host", _HOST)
        default_tls = "starttls"
        if host in SMTP_PRESETS:  # one table of preset hosts, kept with the SMTP provider
            region = region or ("us-east-1" if host == "ses" else "cn-hangzhou")
            try:
                host, _, default_tls = SMTP_PRESETS[host](region)
            except ValueError as exc:
                self.bad("provider.region", str(exc))
                host = "invalid.invalid"
        elif region is not None:
            self.bad("provider.region", "applies to smtp only with host: ses or directmail")
        tls = self.get(m, "provider.tls", choice("starttls", "implicit", "none")) or default_tls
        port = self.get(m, "provider.port", integer(1, 65535))
        username = self.get(m, "provider.username", one_line)
        password_env = self.get(m, "provider.password_env", _ENV_NAME)
        if password_env is not None and username is None and "username" not in m:
            self.bad("provider.password_env", "needs provider.username too")
        pool = self.get(m, "provider.pool", integer(1, 100))
        return ProviderConfig(
            **common,
            region=region,
            host=host,
            port=port or {"starttls": 587, "implicit": 465, "none": 25}[tls],
            tls=tls,
            username=username,
            password_env=password_env,
            pool=pool or 4,
        )

    def provider_only(self, m: dict[str, Any], provider: str | None) -> None:
        """Refuse (and drop from ``m``) top-level keys that ``provider`` does not use."""
        for key, owners in TOP_KEY_PROVIDERS.items():
            if key in m and provider is not None and provider not in owners:
                self.bad(key, f"applies only to provider {' or '.join(owners)}, not {provider}")
                del m[key]

    def directmail(self, raw: Any, provider: str | None) -> dict[str, Any]:
        """The ``directmail:`` block with defaults filled in; ``{}`` for the other providers."""
        if provider != "directmail":
            return {}
        m = self.mapping(raw or {}, "directmail", DIRECTMAIL_KEYS)
        mode = self.get(m, "directmail.mode", choice("single", "batch")) or "single"
        address_type = self.get(m, "directmail.address_type", integer(0, 1))
        click_trace = self.get(m, "directmail.click_trace", _zero_one)
        tag_name = self.get(m, "directmail.tag_name", one_line)
        out: dict[str, Any] = {
            "address_type": 1 if address_type is None else address_type,
            "click_trace": click_trace or "0",
            **({} if tag_name is None else {"tag_name": tag_name}),
            "mode": mode,
        }
        for name in ("template_name", "receivers_name"):
            if mode == "batch":
                out[name] = self.require(m, f"directmail.{name}", one_line)
            elif name in m:
                self.bad(f"directmail.{name}", "is used only with mode: batch")
        return out

    def directmail_limits(
        self, sender: str | None, subject: str | None, headers: list[str], m: dict[str, Any]
    ) -> None:
        """DirectMail's own limits on what every message shares (alias, fixed subject,
        headers), refused here with the key and line rather than by every send."""
        if sender is None:
            return
        from bulkmail.providers.directmail import campaign_problems  # directmail only

        for key, problem in campaign_problems(sender=sender, subject=subject, header_names=headers):
            if key == "headers" and "headers" not in m:
                key = "unsubscribe"  # only the List-Unsubscribe pair
            self.bad(key, f"{problem} (provider directmail)")


def endpoint_url(value: Any) -> str:
    """``provider.endpoint`` / ``--endpoint``: an http(s) URL or ``sandbox``."""
    text = one_line(value).strip()
    if text == "sandbox":
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Bad(f"must be an http(s) URL or 'sandbox', got {text!r}")
    return text


def _zero_one(value: Any) -> str:
    if value in (0, 1, "0", "1") and not isinstance(value, bool):
        return str(value)
    raise Bad(
        f'must be "0" or "1", got {describe(value) if not isinstance(value, str) else value!r}'
    )
