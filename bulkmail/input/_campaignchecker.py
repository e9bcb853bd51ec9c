"""The campaign file's keys and rules: :class:`CampaignChecker` turns the parsed YAML into the
fields of a :class:`~bulkmail.input.campaign.Campaign`, collecting every problem on the way.

It builds on the provider rules of :class:`~bulkmail.input._providerconfig.ProviderChecker`
(``provider:``, ``directmail:``) and the generic machinery of :mod:`bulkmail.input._yamlconfig`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from bulkmail.deliverability.settings import guard_settings
from bulkmail.input._providerconfig import ProviderChecker, endpoint_url
from bulkmail.input._yamlconfig import (
    Bad,
    address,
    describe,
    input_file,
    integer,
    mailbox,
    one_line,
    output_file,
    pattern,
    scalar_text,
    string,
)
from bulkmail.mail.headers import HEADER_NAME, RESERVED_HEADERS

MAX_BODY_BYTES = 10 * 1024 * 1024  #: text/html files (and the campaign file) above this are refused
MAX_ATTACHMENT_BYTES = 40 * 1024 * 1024  #: SES's ceiling for a whole message; no provider is higher

_TOP_KEYS = (
    "name", "provider", "rate", "daily_limit", "concurrency", "max_attempts", "outage_wait",
    "from", "reply_to",
    "subject", "text", "html", "recipients", "suppress", "results", "journal",
    "configuration_set", "tags", "headers", "unsubscribe", "template", "attachments",
    "attachment_column", "source_arn", "from_arn", "return_path_arn", "return_path", "directmail",
    "events", "guard", "bulk",
)  # fmt: skip
_SES_NAME = pattern(r"[A-Za-z0-9_-]{1,64}", "must be 1-64 of A-Z a-z 0-9 _ -")  # sets, templates
_TAG_NAME = pattern(r"[A-Za-z0-9_-]{1,256}", "tag names must be 1-256 of A-Z a-z 0-9 _ -")
_TAG_VALUE = pattern(r"[A-Za-z0-9_-]{1,256}", "must be 1-256 of A-Z a-z 0-9 _ -")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h)?")


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"`` or ``"1h"``.

    >>> duration("10m"), duration(30)
    (600.0, 30.0)
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if match is None:
        raise Bad(f"must be seconds or a duration like '10m' or '90s', got {describe(value)}")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Bad(f"must be true or false, got {describe(value)}")
    return value


_ARN = pattern(r"arn:aws[a-z-]*:ses:[a-z0-9-]+:\d{12}:identity/\S+", "must be an SES identity ARN")


class CampaignChecker(ProviderChecker):
    """The campaign's keys and rules, on top of the provider rules of :class:`ProviderChecker`."""

    credential_hint = (
        "looks like a credential; credentials are never read from the campaign file, they come "
        "from the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, "
        "ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET, or the variable named by "
        "provider.password_env for SMTP); remove this key"
    )
    not_credentials = frozenset({"password_env"})

    def __init__(self, display: str, path: Path, lines: dict[str, int]) -> None:
        super().__init__(display, path.parent, lines)
        self.path = path

    def campaign(self, data: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        m = self.mapping(data, "", _TOP_KEYS)
        if not isinstance(data, dict):
            self.raise_problems()
        flags = self.flags(overrides)
        provider = self.provider(m.get("provider"), flags)
        pname = provider.name if provider else None
        self.provider_only(m, pname)

        stem = self.path.stem
        rate = self.get(m, "rate", _rate)  # checked even when --rate wins
        if "rate" in flags:
            rate = flags["rate"]
        elif "rate" not in m and "--rate" not in {p.key for p in self.problems}:
            self.bad("rate", "is required: recipients per second, or 'auto' to use the quota")
        concurrency = self.get(m, "concurrency", integer(1))
        max_attempts = self.get(m, "max_attempts", integer(1, 100))
        directmail = self.directmail(m.get("directmail"), pname)
        stored = "template" in m or directmail.get("mode") == "batch"
        sources: dict[str, str] = {}
        subject = self.content(m, stored, sources)
        recipients = self.require(m, "recipients", input_file(self.base))
        suppress = self.get(m, "suppress", input_file(self.base))
        attachments = self.attachments(m.get("attachments"))
        results = flags.get("results") or self.output(m, "results", f"{stem}.results.jsonl")
        journal = flags.get("journal") or self.output(m, "journal", f"{stem}.journal.sqlite")
        self.collisions(results, journal, [self.path, recipients, suppress, *attachments])
        unsubscribe = self.unsubscribe(m.get("unsubscribe"))
        template = self.mapping(m["template"], "template", ("name",)) if "template" in m else {}
        if "template" in m and isinstance(m["template"], dict) and "name" not in m["template"]:
            self.bad("template", "needs 'name: <stored template name>'")
        reply_to = m.get("reply_to", [])
        fields: dict[str, Any] = {
            "path": self.path,
            "name": self.get(m, "name", one_line) or stem,
            "provider": provider,
            "rate": rate,
            "daily_limit": self.get(m, "daily_limit", integer(1)),
            "concurrency": flags.get("concurrency", concurrency),
            "max_attempts": 5 if max_attempts is None else max_attempts,
            "outage_wait": flags.get(
                "outage_wait", _or(self.get(m, "outage_wait", duration), 600.0)
            ),
            "sender": self.require(m, "from", mailbox),
            "reply_to": tuple(
                self.check(r, f"reply_to[{i}]", mailbox)
                for i, r in enumerate(reply_to if isinstance(reply_to, list) else [reply_to])
            ),
            "subject": subject,
            "text": self.body(m, "text", sources),
            "html": self.body(m, "html", sources),
            "sources": MappingProxyType(sources),
            "recipients": recipients,
            "suppress": suppress,
            "results": results,
            "journal": journal,
            "configuration_set": self.get(m, "configuration_set", _SES_NAME),
            "tags": self.tags(m.get("tags")),
            "headers": self.headers(m.get("headers")),
            "unsubscribe_url": self.get(unsubscribe, "unsubscribe.url", _unsubscribe_url),
            "unsubscribe_mailto": self.get(unsubscribe, "unsubscribe.mailto", _mailto),
            "template": self.get(template, "template.name", _SES_NAME),
            "attachments": attachments,
            "attachment_column": self.get(m, "attachment_column", one_line),
            **{
                arn: self.get(m, arn, _ARN) for arn in ("source_arn", "from_arn", "return_path_arn")
            },
            "return_path": self.get(m, "return_path", address),
            "directmail": MappingProxyType(directmail),
            "bulk": True if "bulk" not in m else bool(self.get(m, "bulk", _flag)),
            **self.deliverability(m),
        }
        if pname == "directmail" and not stored:
            shared = [*fields["headers"], *(["List-Unsubscribe"] if unsubscribe else [])]
            shared += ["List-Unsubscribe-Post"] if "url" in unsubscribe else []
            self.directmail_limits(fields["sender"], subject, shared, m)
        return fields

    def deliverability(self, m: dict[str, Any]) -> dict[str, Any]:
        events = self.get(m, "events", output_file(self.base))
        return {"events": events, "guard": guard_settings(self, m.get("guard"), "events" in m)}

    def flags(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Command-line overrides, checked like the file but named by their flag.

        Relative ``results``/``journal`` paths are relative to the working directory.
        """
        cwd_file = output_file(Path.cwd())
        checks: dict[str, Callable[[Any], Any]] = {
            "rate": _rate,
            "endpoint": endpoint_url,
            "concurrency": integer(1),
            "outage_wait": duration,
            "results": lambda value: cwd_file(value).absolute(),
            "journal": lambda value: cwd_file(value).absolute(),
        }
        out: dict[str, Any] = {}
        for name, value in overrides.items():
            flag = "--" + str(name).replace("_", "-")
            if value is None:
                continue
            if name not in checks:
                self.bad(flag, "is not a setting that can be overridden")
                continue
            try:  # not self.check(): a valid --rate auto is None
                out[name] = checks[name](value)
            except Bad as exc:
                self.bad(flag, str(exc))
        return out

    def content(self, m: dict[str, Any], stored: bool, sources: dict[str, str]) -> str:
        """Subject and body presence; returns the subject ("" when a stored template is used)."""
        if stored:
            for part in ("subject", "text", "html"):
                if part in m:
                    self.bad(part, "a stored template replaces subject/text/html; remove this key")
                    del m[part]
            return ""
        subject = self.require(m, "subject", one_line)
        if subject is not None:
            sources["subject"] = self.display
        if "text" not in m and "html" not in m and not {"text", "html"} & self.suggested:
            self.bad("text", "give text or html (or both), or use a stored template")
        return subject or ""

    def body(self, m: dict[str, Any], part: str, sources: dict[str, str]) -> str | None:
        """``text:``/``html:`` inline, or ``{file: path}`` read as UTF-8."""
        text, source = self.text(m, part, MAX_BODY_BYTES)
        if source is not None:
            sources[part] = source
        return text

    def output(self, m: dict[str, Any], name: str, default: str) -> Path | None:
        return self.check(m.get(name, default), name, output_file(self.base))

    def collisions(self, results: Path | None, journal: Path | None, inputs: list[Any]) -> None:
        taken = {p.resolve(): "an input file" for p in inputs if isinstance(p, Path)}
        for key, path in (("results", results), ("journal", journal)):
            if path is None:
                continue
            where = path.resolve()
            if where in taken:
                self.bad(key, f"{str(path)!r} is already {taken[where]}; it would be overwritten")
            taken[where] = "the results file"

    def attachments(self, raw: Any) -> tuple[Path, ...]:
        if raw is None:
            return ()
        check = input_file(self.base)
        items = raw if isinstance(raw, list) else [raw]
        paths = [self.check(item, f"attachments[{i}]", check) for i, item in enumerate(items)]
        found = tuple(p for p in paths if p is not None)
        if sum(p.stat().st_size for p in found) > MAX_ATTACHMENT_BYTES:
            self.bad("attachments", "add up to more than 40 MB, above every provider's limit")
        return found

    def tags(self, raw: Any) -> Mapping[str, str]:
        out: dict[str, str] = {}
        for name, value in self.pairs(raw, "tags"):
            try:
                _TAG_NAME(name)
                out[name] = _TAG_VALUE(scalar_text(value))
            except Bad as exc:
                self.bad(f"tags.{name}", str(exc))
        return MappingProxyType(out)

    def headers(self, raw: Any) -> Mapping[str, str]:
        out: dict[str, str] = {}
        for name, value in self.pairs(raw, "headers"):
            key = f"headers.{name}"
            if len(name) > 76 or not HEADER_NAME.fullmatch(name):
                self.bad(key, "is not a valid header name (printable ASCII, no ':' or spaces)")
            elif name.lower() in RESERVED_HEADERS:
                instead = RESERVED_HEADERS[name.lower()]
                self.bad(
                    key,
                    f"is set by bulkmail; use the {instead!r} key instead"
                    if instead
                    else "is set by bulkmail itself",
                )
            elif name.lower() in {n.lower() for n in out}:
                self.bad(key, "is given twice (header names ignore case)")
            else:
                header = self.check(value, key, lambda v: one_line(scalar_text(v)))
                if header is not None:
                    out[name] = header
        return MappingProxyType(out)

    def unsubscribe(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        m = self.mapping(raw, "unsubscribe", ("url", "mailto"))
        if isinstance(raw, dict) and not m:
            self.bad("unsubscribe", "give url, mailto or both")
        return m


# ------------------------------------------------------------------------------ campaign values


def _rate(value: Any) -> float | None:
    if value == "auto":
        return None
    rule = "must be a positive number of recipients per second or 'auto'"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Bad(f"{rule}, got {value if isinstance(value, str) else describe(value)!r}")
    if not math.isfinite(value) or value <= 0:
        raise Bad(f"{rule}, got {value}")
    return float(value)


def _unsubscribe_url(value: Any) -> str:
    text = one_line(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or "<" in text or ">" in text:
        raise Bad(f"must be an http(s) URL (templates allowed), got {text!r}")
    return text


def _mailto(value: Any) -> str:
    text = string(value).strip()
    return address(text[7:] if text.lower().startswith("mailto:") else text)
