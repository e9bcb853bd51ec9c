"""campaign.yaml -> a validated :class:`Campaign`, or one :class:`ConfigError` listing all problems.

Nothing is sent unless the whole file is right, so everything that can be checked before the
first request is checked here: YAML syntax, key names (with a "did you mean"), types and ranges,
address syntax, CR/LF in header values, and that every file it names exists, is a file, can be
read and (for bodies) is UTF-8. Each problem names the file, the dotted key and the YAML line::

    campaign.yaml:7: key 'subjet': unknown key; did you mean 'subject'?
    campaign.yaml:3: key 'provider.region': must look like 'us-east-1', got 'US East'

Credentials never live in the campaign: a key that looks like one is refused, without echoing
its value, because credentials come from the environment.

>>> campaign = Campaign.from_file("examples/campaign.yaml", overrides={"rate": 5})  # doctest: +SKIP
>>> campaign.rate, campaign.results.name                                            # doctest: +SKIP
(5.0, 'campaign.results.jsonl')
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml
from email_validator import EmailNotValidError, validate_email

from bulkmail.errors import ConfigError

MAX_BODY_BYTES = 10 * 1024 * 1024  #: text/html files (and the campaign file) above this are refused
MAX_ATTACHMENT_BYTES = 40 * 1024 * 1024  #: SES's ceiling for a whole message; no provider is higher

_PROVIDERS = ("ses", "directmail", "smtp")
_TOP_KEYS = (
    "name", "provider", "rate", "daily_limit", "concurrency", "max_attempts", "from", "reply_to",
    "subject", "text", "html", "recipients", "suppress", "results", "journal",
    "configuration_set", "tags", "headers", "unsubscribe", "template", "attachments",
    "attachment_column", "source_arn", "from_arn", "return_path_arn", "return_path", "directmail",
)  # fmt: skip
_PROVIDER_KEYS: dict[str, tuple[str, ...]] = {
    "name": _PROVIDERS,
    "region": _PROVIDERS,
    "endpoint": ("ses", "directmail"),
    "api": ("ses",),
    "version": ("directmail",),
    **{k: ("smtp",) for k in ("host", "port", "tls", "username", "password_env", "pool")},
}
_DIRECTMAIL_KEYS = ("address_type", "click_trace", "tag_name", "mode", "template_name",
                    "receivers_name")  # fmt: skip
#: Headers bulkmail writes itself; each maps to the campaign key that sets it.
_RESERVED_HEADERS = {
    "from": "from", "to": "recipients", "cc": "recipients", "bcc": "recipients",
    "subject": "subject", "reply-to": "reply_to", "return-path": "return_path",
    "list-unsubscribe": "unsubscribe", "list-unsubscribe-post": "unsubscribe",
    "date": None, "message-id": None, "mime-version": None, "content-type": None,
    "content-transfer-encoding": None, "sender": None,
}  # fmt: skip
_CREDENTIAL = re.compile(
    r"secret|passw|passphrase|access_?key|api_?key|token|private_?key|credential|(^|_)pwd($|_)"
)
_NOT_CREDENTIALS = frozenset({"password_env"})
_CREDENTIAL_HINT = (
    "looks like a credential; credentials are never read from the campaign file, they come from "
    "the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, "
    "ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET, or the variable named by "
    "provider.password_env for SMTP); remove this key"
)
_REGION = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+")
_SES_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # configuration sets and templates
_TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")  # printable ASCII except ':' (RFC 5322 ftext)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\]")
_ARN = re.compile(r"arn:aws[a-z-]*:ses:[a-z0-9-]+:\d{12}:identity/\S+")


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
class Campaign:
    """A validated campaign; build it with :meth:`from_file`.

    ``text``/``html`` hold the template *source* (files already read); ``sources`` says where
    each part came from, for error messages. Paths are absolute. ``rate`` ``None`` means
    ``auto`` (ask the provider for its quota).

    >>> c = Campaign.from_file("examples/campaign.yaml")        # doctest: +SKIP
    >>> c.provider.name, c.sources["text"]                       # doctest: +SKIP
    ('ses', 'examples/news.txt')
    """

    path: Path
    name: str
    provider: ProviderConfig
    rate: float | None
    daily_limit: int | None
    concurrency: int | None
    max_attempts: int
    sender: str
    reply_to: tuple[str, ...]
    subject: str
    text: str | None
    html: str | None
    sources: Mapping[str, str]
    recipients: Path
    suppress: Path | None
    results: Path
    journal: Path
    configuration_set: str | None
    tags: Mapping[str, str]
    headers: Mapping[str, str]
    unsubscribe_url: str | None
    unsubscribe_mailto: str | None
    template: str | None
    attachments: tuple[Path, ...]
    attachment_column: str | None
    source_arn: str | None
    from_arn: str | None
    return_path_arn: str | None
    return_path: str | None
    directmail: Mapping[str, Any]

    @classmethod
    def from_file(cls, path: Path | str, *, overrides: Mapping[str, Any] | None = None) -> Campaign:
        """Read and validate ``path``; ``overrides`` (CLI flags ``rate``, ``endpoint``,
        ``results``, ``journal``, ``concurrency``) win over the file. Relative paths in the file
        are relative to its directory; relative override paths to the working directory.

        Raises :class:`ConfigError`: the one problem found, or one listing all of them.
        """
        display = str(path)
        file = Path(path).expanduser()
        data, lines = _load_yaml(file, display)
        checker = _Checker(display, file.resolve(), lines)
        fields = checker.campaign(data, dict(overrides or {}))
        checker.raise_problems()
        return cls(**fields)

    def content_hash(self) -> str:
        """sha256 hex of everything that changes what a recipient receives.

        Operational knobs (rate, endpoint, region, results, journal, concurrency, limits) are
        left out, so an operator may change them between runs of the same campaign.
        """
        p = self.provider
        doc = {
            "provider": p.name,
            "api": p.api if p.name == "ses" else None,
            "version": p.version if p.name == "directmail" else None,
            "sender": self.sender,
            "reply_to": list(self.reply_to),
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "headers": dict(self.headers),
            "unsubscribe": [self.unsubscribe_url, self.unsubscribe_mailto],
            "template": self.template,
            "tags": dict(self.tags),
            "configuration_set": self.configuration_set,
            "arns": [self.source_arn, self.from_arn, self.return_path_arn],
            "return_path": self.return_path,
            "attachment_column": self.attachment_column,
            "directmail": dict(self.directmail),
            "attachments": [[a.name, _file_digest(a, self.path)] for a in self.attachments],
        }
        blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _file_digest(path: Path, campaign: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ConfigError(
            f"attachment {str(path)!r} cannot be read: {exc.strerror}",
            file=str(campaign),
            key="attachments",
        ) from exc
    return digest.hexdigest()


# ---------------------------------------------------------------------------------- YAML + lines


def _load_yaml(file: Path, display: str) -> tuple[Any, dict[str, int]]:
    """The document and the line (1-based) of every key path in it; never a traceback."""
    try:
        if file.stat().st_size > MAX_BODY_BYTES:
            raise ConfigError("is larger than 10 MB; is this really a campaign file?", file=display)
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError("campaign file not found", file=display) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a campaign file", file=display) from None
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror}", file=display) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("is not UTF-8", file=display, line=line) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(str(s) for s in (exc.context, exc.problem) if s)
        if mark is None:
            raise ConfigError(f"invalid YAML: {what}", file=display) from None
        raise ConfigError(
            f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}",
            file=display,
            line=mark.line + 1,
        ) from None
    except yaml.YAMLError as exc:  # reader errors (control characters) carry no line mark
        raise ConfigError(f"invalid YAML: {exc}", file=display) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=display) from None
    finally:
        loader.dispose()
    if data is None:
        raise ConfigError("is empty; expected a mapping of campaign keys", file=display, line=1)
    lines: dict[str, int] = {}
    if node is not None:
        _record_lines(node, "", lines, set())
    return data, lines


def _record_lines(node: yaml.Node, path: str, lines: dict[str, int], seen: set[int]) -> None:
    if id(node) in seen:  # an alias: its keys are recorded where the anchor is; no blow-up
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                child = f"{path}.{key.value}" if path else str(key.value)
                lines.setdefault(child, key.start_mark.line + 1)
                _record_lines(value, child, lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines.setdefault(child, item.start_mark.line + 1)
            _record_lines(item, child, lines, seen)


# ------------------------------------------------------------------------------- value checkers


class _Bad(Exception):
    """A value is wrong; the message says how. Turned into a ConfigError with file/key/line."""


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean; quote it if you meant text)"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, _dt.date):
        return "a date (quote it)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be a string, got {_kind(value)}")
    return value


def _one_line(value: Any) -> str:
    text = _string(value)
    if "\r" in text or "\n" in text:
        raise _Bad("must not contain CR or LF (it goes into a mail header)")
    if not text.strip():
        raise _Bad("must not be empty")
    return text


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, _dt.date):  # 2015-11-23 unquoted is a date to YAML
            value = value.isoformat()
        if value not in options:
            shown = value if isinstance(value, str) else _kind(value)
            raise _Bad(f"must be one of {', '.join(options)}; got {shown!r}")
        return str(value)

    return check


def _pattern(regex: re.Pattern[str], rule: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _string(value)
        if not regex.fullmatch(text):
            raise _Bad(f"{rule}; got {text!r}")
        return text

    return check


def _integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"must be a whole number, got {_kind(value)}")
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"between {low} and {high}"
            raise _Bad(f"must be {span}, got {value}")
        return value

    return check


def _rate(value: Any) -> float | None:
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(
            f"must be a positive number of recipients per second or 'auto', got "
            f"{value if isinstance(value, str) else _kind(value)!r}"
        )
    if not math.isfinite(value) or value <= 0:
        raise _Bad(f"must be a positive number of recipients per second or 'auto', got {value}")
    return float(value)


def _address(value: Any, *, display_name: bool = False) -> str:
    """``user@example.com`` (or ``Name <user@example.com>`` if ``display_name``), one address."""
    text = _one_line(value).strip()
    pairs = getaddresses([text])
    name, addr = parseaddr(text)
    if len(pairs) != 1 or not addr:
        raise _Bad(f"must be one address like 'Name <user@example.com>', got {text!r}")
    if name and not display_name:
        raise _Bad(f"must be a bare address like 'user@example.com', got {text!r}")
    try:
        validate_email(addr, check_deliverability=False)
    except EmailNotValidError as exc:
        raise _Bad(f"{addr!r} is not a valid address: {exc}") from None
    return text


def _mailbox(value: Any) -> str:
    return _address(value, display_name=True)


def _endpoint(value: Any) -> str:
    text = _one_line(value).strip()
    if text == "sandbox":
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Bad(f"must be an http(s) URL or 'sandbox', got {text!r}")
    return text


def _unsubscribe_url(value: Any) -> str:
    text = _one_line(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or "<" in text or ">" in text:
        raise _Bad(f"must be an http(s) URL (templates allowed), got {text!r}")
    return text


def _scalar_text(value: Any) -> str:
    """Tag and header values: text, or a number YAML parsed (``year: 2024``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _string(value)


# ------------------------------------------------------------------------------------- checker


class _Checker:
    """Walks the parsed document, collecting every problem instead of stopping at the first."""

    def __init__(self, display: str, path: Path, lines: dict[str, int]) -> None:
        self.display = display
        self.path = path
        self.base = path.parent
        self.lines = lines
        self.problems: list[ConfigError] = []
        self.suggested: set[str] = set()  # keys offered by "did you mean": not also "required"

    # -- reporting

    def bad(self, key: str, message: str) -> None:
        if key.startswith("--"):
            self.problems.append(ConfigError(message, key=key))
            return
        line, probe = None, key
        while line is None:  # a key we have no line for (an alias, a flag): its parent's line
            line = self.lines.get(probe)
            parent = re.sub(r"(\.[^.\[\]]*|\[\d+\])$", "", probe)
            if parent == probe or not parent:
                break
            probe = parent
        self.problems.append(ConfigError(message, file=self.display, key=key, line=line))

    def raise_problems(self) -> None:
        if len(self.problems) == 1:
            raise self.problems[0]
        if self.problems:
            listing = "\n".join(f"  {p}" for p in self.problems)
            raise ConfigError(f"{len(self.problems)} problems:\n{listing}", file=self.display)

    # -- structure

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        """The known keys of a mapping; unknown and credential-looking keys are reported."""
        if not isinstance(value, dict):
            self.bad(key or "(top level)", f"must be a mapping of keys, got {_kind(value)}")
            return {}
        known: dict[str, Any] = {}
        for name, item in value.items():
            where = f"{key}.{name}" if key else str(name)
            if not isinstance(name, str):
                self.bad(where, f"keys must be text, got {_kind(name)}")
            elif self.credential(name, where):
                continue
            elif name in allowed:
                if item is not None:  # `key:` with no value is the same as leaving it out
                    known[name] = item
            else:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.suggested.update(f"{key}.{c}" if key else c for c in close)
                self.bad(where, f"unknown key{hint}")
        return known

    def credential(self, name: str, where: str) -> bool:
        if name in _NOT_CREDENTIALS or not _CREDENTIAL.search(name.lower().replace("-", "_")):
            return False
        self.bad(where, _CREDENTIAL_HINT)  # never the value
        return True

    def get(self, m: dict[str, Any], name: str, key: str, check: Callable[[Any], Any]) -> Any:
        """``check(m[name])``, or None if absent or wrong (then the problem is recorded)."""
        if name not in m:
            return None
        try:
            return check(m[name])
        except _Bad as exc:
            self.bad(key, str(exc))
            return None

    def require(self, m: dict[str, Any], name: str, key: str, check: Callable[[Any], Any]) -> Any:
        if name not in m:
            if key not in self.suggested:
                self.bad(key, "is required")
            return None
        return self.get(m, name, key, check)

    # -- files

    def input_file(self, value: Any, key: str) -> Path | None:
        """An existing, readable regular file, relative to the campaign's directory."""
        try:
            text = _one_line(value)
        except _Bad as exc:
            self.bad(key, str(exc))
            return None
        path = self.base / Path(text).expanduser()
        try:
            if path.is_dir():
                self.bad(key, f"{text!r} is a directory, not a file")
                return None
            with path.open("rb"):
                pass
        except FileNotFoundError:
            self.bad(key, f"file not found: {text!r} (looked for {str(path)!r})")
            return None
        except OSError as exc:
            self.bad(key, f"{text!r} cannot be read: {exc.strerror}")
            return None
        return path

    def output_file(self, value: Any, key: str, base: Path) -> Path | None:
        """A path we will create or append to: not a directory, in a directory that exists."""
        try:
            text = _one_line(value)
        except _Bad as exc:
            self.bad(key, str(exc))
            return None
        path = base / Path(text).expanduser()
        if path.is_dir():
            self.bad(key, f"{text!r} is a directory; give a file name")
        elif not path.parent.is_dir():
            self.bad(key, f"directory {str(path.parent)!r} does not exist")
        else:
            return path
        return None

    def body(self, m: dict[str, Any], part: str, sources: dict[str, str]) -> str | None:
        """``text:``/``html:`` inline, or ``{file: path}`` read as UTF-8."""
        if part not in m:
            return None
        value = m[part]
        if isinstance(value, str):
            if len(value.encode()) > MAX_BODY_BYTES:
                self.bad(part, "is larger than 10 MB")
                return None
            sources[part] = self.display
            return value
        if not isinstance(value, dict):
            self.bad(part, f"must be text or {{file: path}}, got {_kind(value)}")
            return None
        spec = self.mapping(value, part, ("file",))
        if "file" not in spec:
            if "file" not in value and f"{part}.file" not in self.suggested:
                self.bad(part, "needs 'file: path' (or give the text inline)")
            return None
        path = self.input_file(spec["file"], f"{part}.file")
        if path is None:
            return None
        try:
            if path.stat().st_size > MAX_BODY_BYTES:
                self.bad(f"{part}.file", f"{str(path)!r} is larger than 10 MB")
                return None
            raw = path.read_bytes()
            source = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.bad(
                f"{part}.file",
                f"{str(path)!r} is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                f"{exc.start}); save it as UTF-8",
            )
            return None
        except OSError as exc:
            self.bad(f"{part}.file", f"{str(path)!r} cannot be read: {exc.strerror}")
            return None
        written = Path(str(spec["file"])).expanduser()
        sources[part] = str(
            written if written.is_absolute() else Path(self.display).parent / written
        )
        return source

    # -- the document

    def campaign(self, data: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        m = self.mapping(data, "", _TOP_KEYS)
        if not isinstance(data, dict):
            self.raise_problems()
        flags = self.flags(overrides)
        provider = self.provider(m.get("provider"), flags)
        pname = provider.name if provider else None
        for key, owners in (
            ("configuration_set", ("ses", "smtp")),
            ("tags", ("ses", "smtp")),
            ("return_path", ("ses", "smtp")),
            ("template", ("ses",)),
            ("source_arn", ("ses",)),
            ("from_arn", ("ses",)),
            ("return_path_arn", ("ses",)),
            ("directmail", ("directmail",)),
        ):
            if key in m and pname is not None and pname not in owners:
                self.bad(key, f"applies only to provider {' or '.join(owners)}, not {pname}")
                del m[key]

        stem = self.path.stem
        rate: float | None = None
        if "rate" in flags:
            rate = flags["rate"]
            self.get(m, "rate", "rate", _rate)
        elif "rate" in m:
            rate = self.get(m, "rate", "rate", _rate)
        elif "--rate" not in {p.key for p in self.problems}:
            self.bad("rate", "is required: recipients per second, or 'auto' to use the quota")
        concurrency = self.get(m, "concurrency", "concurrency", _integer(1))
        max_attempts = self.get(m, "max_attempts", "max_attempts", _integer(1, 100))
        directmail = self.directmail(m.get("directmail"), pname)
        stored = "template" in m or directmail.get("mode") == "batch"
        sources: dict[str, str] = {}
        subject = self.content(m, stored, sources)
        recipients = self.get_input(m, "recipients", required=True)
        suppress = self.get_input(m, "suppress")
        attachments = self.attachments(m.get("attachments"))
        results = flags.get("results") or self.get_output(m, "results", f"{stem}.results.jsonl")
        journal = flags.get("journal") or self.get_output(m, "journal", f"{stem}.journal.sqlite")
        self.collisions(results, journal, [self.path, recipients, suppress, *attachments])
        unsubscribe = self.unsubscribe(m.get("unsubscribe"))
        template = self.mapping(m["template"], "template", ("name",)) if "template" in m else {}
        if "template" in m and isinstance(m["template"], dict) and "name" not in m["template"]:
            self.bad("template", "needs 'name: <stored template name>'")
        reply_to = m.get("reply_to", [])
        if not isinstance(reply_to, list):
            reply_to = [reply_to]
            self.lines.setdefault("reply_to[0]", self.lines.get("reply_to", 0))
        return {
            "path": self.path,
            "name": self.get(m, "name", "name", _one_line) or stem,
            "provider": provider,
            "rate": rate,
            "daily_limit": self.get(m, "daily_limit", "daily_limit", _integer(1)),
            "concurrency": flags.get("concurrency", concurrency),
            "max_attempts": 5 if max_attempts is None else max_attempts,
            "sender": self.require(m, "from", "from", _mailbox),
            "reply_to": tuple(
                self.get({"r": r}, "r", f"reply_to[{i}]", _mailbox) for i, r in enumerate(reply_to)
            ),
            "subject": subject,
            "text": self.body(m, "text", sources),
            "html": self.body(m, "html", sources),
            "sources": MappingProxyType(sources),
            "recipients": recipients,
            "suppress": suppress,
            "results": results,
            "journal": journal,
            "configuration_set": self.get(
                m,
                "configuration_set",
                "configuration_set",
                _pattern(_SES_NAME, "must be 1-64 of A-Z a-z 0-9 _ -"),
            ),
            "tags": self.tags(m.get("tags")),
            "headers": self.headers(m.get("headers")),
            "unsubscribe_url": self.get(unsubscribe, "url", "unsubscribe.url", _unsubscribe_url),
            "unsubscribe_mailto": self.get(unsubscribe, "mailto", "unsubscribe.mailto", _mailto),
            "template": self.get(
                template,
                "name",
                "template.name",
                _pattern(_SES_NAME, "must be 1-64 of A-Z a-z 0-9 _ -"),
            ),
            "attachments": attachments,
            "attachment_column": self.get(m, "attachment_column", "attachment_column", _one_line),
            **{
                arn: self.get(m, arn, arn, _pattern(_ARN, "must be an SES identity ARN"))
                for arn in ("source_arn", "from_arn", "return_path_arn")
            },
            "return_path": self.get(m, "return_path", "return_path", _address),
            "directmail": MappingProxyType(directmail),
        }

    def flags(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Command-line overrides, checked like the file but named by their flag."""
        out: dict[str, Any] = {}
        checks: dict[str, Callable[[Any], Any]] = {
            "rate": _rate,
            "endpoint": _endpoint,
            "concurrency": _integer(1),
        }
        for name, value in overrides.items():
            flag = "--" + str(name).replace("_", "-")
            if value is None:
                continue
            if name in ("results", "journal"):
                path = self.output_file(value, flag, Path.cwd())
                if path is not None:
                    out[name] = path.absolute()
            elif name in checks:
                try:
                    out[name] = checks[name](value)
                except _Bad as exc:
                    self.bad(flag, str(exc))
            else:
                self.bad(flag, "is not a setting that can be overridden")
        return out

    def provider(self, raw: Any, flags: dict[str, Any]) -> ProviderConfig | None:
        if raw is None:
            self.bad("provider", "is required (name: ses | directmail | smtp)")
            return None
        m = self.mapping(
            {"name": raw} if isinstance(raw, str) else raw, "provider", tuple(_PROVIDER_KEYS)
        )
        name = self.require(m, "name", "provider.name", _choice(*_PROVIDERS))
        if name is None:
            return None
        for key in list(m):
            if name not in _PROVIDER_KEYS[key]:
                owners = " or ".join(_PROVIDER_KEYS[key])
                self.bad(f"provider.{key}", f"applies only to provider {owners}, not {name}")
                del m[key]
        region = self.get(
            m,
            "region",
            "provider.region",
            _pattern(_REGION, "must look like 'us-east-1' or 'cn-hangzhou'"),
        )
        endpoint = self.get(m, "endpoint", "provider.endpoint", _endpoint)
        if "endpoint" in flags:
            if name == "smtp":
                self.bad("--endpoint", "does not apply to provider smtp (set provider.host)")
            endpoint = flags["endpoint"]
        common = {"name": name, "endpoint": endpoint}
        if name == "ses":
            api = self.get(m, "api", "provider.api", _choice("v2", "v1"))
            return ProviderConfig(**common, region=region or "us-east-1", api=api or "v2")
        if name == "directmail":
            version = self.get(
                m, "version", "provider.version", _choice("2015-11-23", "2017-06-22")
            )
            return ProviderConfig(
                **common, region=region or "cn-hangzhou", version=version or "2015-11-23"
            )
        host = self.require(
            m,
            "host",
            "provider.host",
            _pattern(_HOST, "must be a host name, 'ses' or 'directmail'"),
        )
        default_tls = "starttls"
        if host == "ses":
            region = region or "us-east-1"
            host = f"email-smtp.{region}.amazonaws.com"
        elif host == "directmail":
            region = region or "cn-hangzhou"
            host = "smtpdm.aliyun.com" if region == "cn-hangzhou" else f"smtpdm-{region}.aliyun.com"
            default_tls = "implicit"
        elif region is not None:
            self.bad("provider.region", "applies to smtp only with host: ses or directmail")
        tls = self.get(m, "tls", "provider.tls", _choice("starttls", "implicit", "none"))
        tls = tls or default_tls
        port = self.get(m, "port", "provider.port", _integer(1, 65535))
        username = self.get(m, "username", "provider.username", _one_line)
        password_env = self.get(
            m,
            "password_env",
            "provider.password_env",
            _pattern(_ENV_NAME, "must be an environment variable name"),
        )
        if password_env is not None and username is None and "username" not in m:
            self.bad("provider.password_env", "needs provider.username too")
        pool = self.get(m, "pool", "provider.pool", _integer(1, 100))
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

    def content(self, m: dict[str, Any], stored: bool, sources: dict[str, str]) -> str:
        """Subject and body presence; returns the subject ("" when a stored template is used)."""
        if stored:
            for part in ("subject", "text", "html"):
                if part in m:
                    self.bad(part, "a stored template replaces subject/text/html; remove this key")
                    del m[part]
            return ""
        subject = self.require(m, "subject", "subject", _one_line)
        if subject is not None:
            sources["subject"] = self.display
        if "text" not in m and "html" not in m and not {"text", "html"} & self.suggested:
            self.bad("text", "give text or html (or both), or use a stored template")
        return subject or ""

    def get_input(self, m: dict[str, Any], name: str, *, required: bool = False) -> Any:
        if name not in m:
            if required and name not in self.suggested:
                self.bad(name, "is required")
            return None
        return self.input_file(m[name], name)

    def get_output(self, m: dict[str, Any], name: str, default: str) -> Path | None:
        return self.output_file(m.get(name, default), name, self.base)

    def collisions(self, results: Path | None, journal: Path | None, inputs: list[Any]) -> None:
        taken = {p.resolve(): "an input file" for p in inputs if isinstance(p, Path)}
        for key, path in (("results", results), ("journal", journal)):
            if path is None:
                continue
            if path.resolve() in taken:
                self.bad(
                    key,
                    f"{str(path)!r} is already {taken[path.resolve()]}; it would be overwritten",
                )
            taken[path.resolve()] = "the results file"

    def attachments(self, raw: Any) -> tuple[Path, ...]:
        if raw is None:
            return ()
        items = raw if isinstance(raw, list) else [raw]
        paths = [self.input_file(item, f"attachments[{i}]") for i, item in enumerate(items)]
        found = tuple(p for p in paths if p is not None)
        if sum(p.stat().st_size for p in found) > MAX_ATTACHMENT_BYTES:
            self.bad("attachments", "add up to more than 40 MB, above every provider's limit")
        return found

    def tags(self, raw: Any) -> Mapping[str, str]:
        out: dict[str, str] = {}
        for name, value in self.pairs(raw, "tags"):
            try:
                _pattern(_TAG, "tag names must be 1-256 of A-Z a-z 0-9 _ -")(name)
                out[name] = _pattern(_TAG, "must be 1-256 of A-Z a-z 0-9 _ -")(_scalar_text(value))
            except _Bad as exc:
                self.bad(f"tags.{name}", str(exc))
        return MappingProxyType(out)

    def headers(self, raw: Any) -> Mapping[str, str]:
        out: dict[str, str] = {}
        for name, value in self.pairs(raw, "headers"):
            key = f"headers.{name}"
            if not _HEADER_NAME.fullmatch(name):
                self.bad(key, "is not a valid header name (printable ASCII, no ':' or spaces)")
            elif name.lower() in _RESERVED_HEADERS:
                instead = _RESERVED_HEADERS[name.lower()]
                self.bad(
                    key,
                    f"is set by bulkmail; use the {instead!r} key instead"
                    if instead
                    else "is set by bulkmail itself",
                )
            elif name.lower() in {n.lower() for n in out}:
                self.bad(key, "is given twice (header names ignore case)")
            else:
                try:
                    out[name] = _one_line(_scalar_text(value))
                except _Bad as exc:
                    self.bad(key, str(exc))
        return MappingProxyType(out)

    def pairs(self, raw: Any, key: str) -> list[tuple[str, Any]]:
        """The entries of a free-form mapping (tags, headers), credential keys refused."""
        if raw is None:
            return []
        if not isinstance(raw, dict):
            self.bad(key, f"must be a mapping, got {_kind(raw)}")
            return []
        out = []
        for name, value in raw.items():
            if not isinstance(name, str):
                self.bad(f"{key}.{name}", f"names must be text, got {_kind(name)}")
            elif not self.credential(name, f"{key}.{name}"):
                out.append((name, value))
        return out

    def unsubscribe(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        m = self.mapping(raw, "unsubscribe", ("url", "mailto"))
        if isinstance(raw, dict) and not m:
            self.bad("unsubscribe", "give url, mailto or both")
        return m

    def directmail(self, raw: Any, provider: str | None) -> dict[str, Any]:
        if provider != "directmail":
            return {}
        m = self.mapping(raw or {}, "directmail", _DIRECTMAIL_KEYS)
        mode = self.get(m, "mode", "directmail.mode", _choice("single", "batch")) or "single"
        out: dict[str, Any] = {
            "address_type": self.get(m, "address_type", "directmail.address_type", _integer(0, 1)),
            "click_trace": self.get(m, "click_trace", "directmail.click_trace", _zero_one),
            "tag_name": self.get(m, "tag_name", "directmail.tag_name", _one_line),
            "mode": mode,
        }
        for name in ("template_name", "receivers_name"):
            key = f"directmail.{name}"
            if mode == "batch":
                out[name] = self.require(m, name, key, _one_line)
            elif name in m:
                self.bad(key, "is used only with mode: batch")
        out.setdefault("address_type", 1)
        if out["address_type"] is None:
            out["address_type"] = 1
        if out["click_trace"] is None:
            out["click_trace"] = "0"
        if out["tag_name"] is None:
            del out["tag_name"]
        return out


def _zero_one(value: Any) -> str:
    if value in (0, 1, "0", "1") and not isinstance(value, bool):
        return str(value)
    raise _Bad(f'must be "0" or "1", got {_kind(value) if not isinstance(value, str) else value!r}')


def _mailto(value: Any) -> str:
    text = _string(value).strip()
    return _address(text[7:] if text.lower().startswith("mailto:") else text)


__all__ = ["MAX_ATTACHMENT_BYTES", "MAX_BODY_BYTES", "Campaign", "ProviderConfig"]
