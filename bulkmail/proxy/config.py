"""``PROXY.yaml`` -> a validated :class:`ProxyConfig`; every problem names file, key and line.

    listen: 127.0.0.1:8025            # default; tls: {cert: cert.pem, key: key.pem} for HTTPS
    clients:
      - access_key_id: AKIDPROXYCLIENT0001
        secret_env: PROXY_CLIENT_SECRET  # or secret_file: path (the secret, one line)
        identities: [example.com]         # From addresses / domains this client may use
        share: 1                          # optional weight for fair sharing
    provider: {name: ses, region: us-east-1}   # the campaign's schema
    rate: 14                              # or auto (the upstream quota)
    journal: proxy.journal.sqlite         # or, shared by several proxies:
    # queue: redis://user:password@redis:6379/0   (or {url: ..., password_env: NAME,
    #        name: default, visibility: 30, keep: 604800}); not both
    results: proxy.results.jsonl
    max_backlog: 1000000                  # recipients queued before answering Throttling

The ``provider:`` block is checked by the campaign's
:class:`~bulkmail.input._providerconfig.ProviderChecker`; upstream credentials come from the
environment as for campaigns. Client secrets are read from the environment or a file, never
from this file, and never appear in an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from bulkmail.input._providerconfig import ProviderChecker
from bulkmail.input._yamlconfig import Bad, describe, integer, load_yaml, one_line, output_file
from bulkmail.providers.config import ProviderConfig, ProviderSetup
from bulkmail.proxy.service import Client
from bulkmail.signing.sigv4 import AwsCredentials

_KEYS = ("listen", "tls", "clients", "provider", "rate", "journal", "results", "max_backlog",
         "queue", "max_connections", "header_timeout", "body_timeout", "region")  # fmt: skip
_CLIENT_KEYS = ("access_key_id", "secret_env", "secret_file", "identities", "share")
_QUEUE_KEYS = ("url", "password_env", "name", "visibility", "keep")
_KEY_ID = re.compile(r"[A-Z0-9]{16,128}")
_MAX_FILE = 1 << 20


@dataclass(frozen=True, kw_only=True)
class QueueConfig:
    """``queue:``: the fleet's Redis as the accept queue, shared by every proxy using it.

    >>> QueueConfig(url="redis://127.0.0.1:6379/0").visibility
    30.0
    """

    url: str
    name: str = "default"
    visibility: float = 30.0  # a dead proxy's chunks are taken over after this long
    keep: float = 7 * 86400.0  # a message's content and status are kept this long

    def __repr__(self) -> str:  # the URL may hold a password
        return f"QueueConfig({_redacted(self.url)!r}, name={self.name!r})"

    @property
    def display(self) -> str:
        return _redacted(self.url)


@dataclass(frozen=True, kw_only=True)
class ProxyConfig:
    """What ``bulkmail proxy`` runs with.

    >>> config = ProxyConfig.from_file("PROXY.yaml")                    # doctest: +SKIP
    >>> config.listen
    ('127.0.0.1', 8025)
    """

    path: Path
    host: str
    port: int
    tls: tuple[Path, Path] | None
    clients: tuple[Client, ...]
    provider: ProviderConfig
    rate: float | None  # None: auto
    journal: Path
    results: Path
    max_backlog: int
    queue: QueueConfig | None = None
    max_connections: int
    header_timeout: float
    body_timeout: float

    @property
    def listen(self) -> tuple[str, int]:
        return self.host, self.port

    def provider_setup(
        self, *, endpoint: str | None = None, environ: Mapping[str, str] | None = None
    ) -> ProviderSetup:
        return ProviderSetup(config=self.provider, endpoint=endpoint, environ=environ)

    @classmethod
    def from_file(
        cls, path: Path | str, *, environ: Mapping[str, str] | None = None
    ) -> ProxyConfig:
        display = str(path)
        file = Path(path).expanduser()
        data, lines = load_yaml(file, display, what="proxy", max_bytes=_MAX_FILE)
        checker = _ProxyChecker(display, file.resolve().parent, lines)
        config = checker.proxy(data, file, os.environ if environ is None else environ)
        checker.raise_problems()
        assert config is not None
        return config


def _listen(value: Any) -> tuple[str, int]:
    text = one_line(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise Bad(f"must be HOST:PORT (127.0.0.1:8025), got {text!r}")
    return host.strip("[]"), int(port)


def _rate(value: Any) -> float | None:
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise Bad(f"must be a positive number of recipients per second or 'auto', got {value!r}")
    return float(value)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise Bad(f"must be a positive number of seconds, got {describe(value)}")
    return float(value)


def _share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise Bad(f"must be a positive number, got {describe(value)}")
    return float(value)


class _ProxyChecker(ProviderChecker):
    credential_hint = (
        "looks like a credential; give client secrets as secret_env or secret_file, "
        "and upstream credentials in the environment"
    )
    not_credentials = frozenset({"access_key_id", "secret_env", "secret_file", "password_env"})

    def proxy(self, data: Any, file: Path, environ: Mapping[str, str]) -> ProxyConfig | None:
        m = self.mapping(data, "", _KEYS)
        host, port = self.get(m, "listen", _listen) or ("127.0.0.1", 8025)
        queue = self._queue(m.get("queue"), environ) if "queue" in m else None
        if "queue" in m and "journal" in m:
            self.bad("queue", "give either journal: FILE or queue: redis://..., not both")
        provider = self.provider(m.get("provider"), {})
        if "rate" not in m:
            self.bad("rate", "is required: recipients per second, or 'auto' to use the quota")
        rate = self.get(m, "rate", _rate)
        base = self.base
        journal = self.get(m, "journal", output_file(base)) or base / "proxy.journal.sqlite"
        results = self.get(m, "results", output_file(base)) or base / "proxy.results.jsonl"
        clients = self._clients(m.get("clients"), environ)
        tls = self._tls(m.get("tls"))
        if provider is None:
            return None
        return ProxyConfig(
            path=file,
            host=host,
            port=port,
            tls=tls,
            clients=tuple(clients),
            provider=provider,
            rate=rate,
            journal=journal,
            results=results,
            max_backlog=self.get(m, "max_backlog", integer(1)) or 1_000_000,
            max_connections=self.get(m, "max_connections", integer(1, 100_000)) or 1024,
            header_timeout=self.get(m, "header_timeout", _seconds) or 10.0,
            body_timeout=self.get(m, "body_timeout", _seconds) or 60.0,
            queue=queue,
        )

    def _queue(self, raw: Any, environ: Mapping[str, str]) -> QueueConfig | None:
        if isinstance(raw, str):
            m: dict[str, Any] = {}
            url = self.check(raw, "queue", _redis_url)
        else:
            m = self.mapping(raw, "queue", _QUEUE_KEYS)
            url = self.require(m, "queue.url", _redis_url)
        if url is None:
            return None
        if "password_env" in m:
            name = self.get(m, "queue.password_env", one_line)
            password = str(environ.get(name, "")) if name else ""
            if not password:
                self.bad("queue.password_env", f"environment variable {name} is not set")
                return None
            parts = urlsplit(url)
            user = quote(parts.username or "", safe="")
            netloc = f"{user}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
            url = urlunsplit(parts._replace(netloc=netloc))
        return QueueConfig(
            url=url,
            name=self.get(m, "queue.name", _queue_name) or "default",
            visibility=self.get(m, "queue.visibility", _seconds) or 30.0,
            keep=self.get(m, "queue.keep", _seconds) or 7 * 86400.0,
        )

    def _tls(self, raw: Any) -> tuple[Path, Path] | None:
        if raw is None:
            return None
        m = self.mapping(raw, "tls", ("cert", "key"))
        cert = self.require(m, "tls.cert", _existing(self.base))
        key = self.require(m, "tls.key", _existing(self.base))
        return (cert, key) if cert and key else None

    def _clients(self, raw: Any, environ: Mapping[str, str]) -> list[Client]:
        if not isinstance(raw, list) or not raw:
            self.bad("clients", "is required: a list of {access_key_id, secret_env, identities}")
            return []
        out: list[Client] = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            where = f"clients[{i}]"
            m = self.mapping(item, where, _CLIENT_KEYS)
            key_id = self.require(m, f"{where}.access_key_id", _key_id)
            if key_id in seen:
                self.bad(f"{where}.access_key_id", "is given twice")
            secret = self._secret(m, where, environ)
            identities = self._identities(m.get("identities"), f"{where}.identities")
            share = self.get(m, f"{where}.share", _share) or 1.0
            if key_id and secret and identities:
                seen.add(key_id)
                out.append(Client(AwsCredentials(key_id, secret), tuple(identities), share))
        return out

    def _secret(self, m: dict[str, Any], where: str, environ: Mapping[str, str]) -> str | None:
        if ("secret_env" in m) == ("secret_file" in m):
            self.bad(where, "needs exactly one of secret_env or secret_file")
            return None
        if "secret_env" in m:
            name = self.get(m, f"{where}.secret_env", one_line)
            if name is None:
                return None
            value = str(environ.get(name, ""))
            if not value:
                self.bad(f"{where}.secret_env", f"environment variable {name} is not set")
                return None
            return value
        path = self.get(m, f"{where}.secret_file", _existing(self.base))
        if path is None:
            return None
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            self.bad(f"{where}.secret_file", "cannot be read as UTF-8 text")
            return None
        if not value or "\n" in value:
            self.bad(f"{where}.secret_file", "must hold the secret on one line")
            return None
        return value

    def _identities(self, raw: Any, key: str) -> list[str]:
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            self.bad(key, "is required: the From addresses or domains this client may use")
            return []
        out = []
        for i, item in enumerate(raw):
            value = self.check(item, f"{key}[{i}]", _identity)
            if value is not None:
                out.append(value)
        return out


def _redis_url(value: Any) -> str:
    text = one_line(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise Bad(
            "must be a Redis URL: redis://HOST:PORT/DB, rediss:// for TLS, "
            f"redis://USER:PASSWORD@HOST for an ACL user; got {_redacted(text)!r}"
        )
    try:
        _ = parts.port
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"the database must be a number, not {db!r}")
    except ValueError as exc:
        raise Bad(f"{exc} in {_redacted(text)!r}") from None
    return text


def _queue_name(value: Any) -> str:
    text = one_line(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise Bad("must be 1 to 64 letters, digits, '_', '.' or '-'")
    return text


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _key_id(value: Any) -> str:
    text = one_line(value).strip()
    if not _KEY_ID.fullmatch(text):
        raise Bad("must be 16 to 128 capital letters and digits (AKIDPROXYCLIENT0001)")
    return text


def _identity(value: Any) -> str:
    text = one_line(value).strip().lower()
    local, at, domain = text.rpartition("@")
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", domain) or (at and not local):
        raise Bad(f"must be an address or a domain, got {text!r}")
    return text


def _existing(base: Path) -> Callable[[Any], Path]:
    def check(value: Any) -> Path:
        text = one_line(value)
        path = base / Path(text).expanduser()
        if not path.is_file():
            raise Bad(f"file {text!r} not found")
        return path

    return check


__all__ = ["ProxyConfig", "QueueConfig"]
