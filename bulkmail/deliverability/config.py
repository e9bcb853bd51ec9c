"""EVENTS.yaml -> a validated :class:`EventsConfig`, checked like a campaign file.

Every problem names the file, the key and its line; unknown keys suggest the closest one::

    events.yaml:2: key 'topic': unknown key; did you mean 'topics'?

>>> config = EventsConfig.from_file("events.yaml")               # doctest: +SKIP
>>> config.listen, config.cert_hosts                            # doctest: +SKIP
(('127.0.0.1', 8026), ('sns.*.amazonaws.com',))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkmail.input._yamlconfig import (
    Bad,
    Checker,
    input_file,
    load_yaml,
    one_line,
    output_file,
    pattern,
    string,
)
from bulkmail.signing.sns import DEFAULT_CERT_HOSTS

_KEYS = ("listen", "topics", "suppress", "cert_hosts", "events", "tls")
_TOPIC = pattern(
    r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}",
    "must be an SNS topic ARN like 'arn:aws:sns:us-east-1:123456789012:ses-events'",
)
_HOST = re.compile(r"[A-Za-z0-9*?.\[\]-]+(:[0-9*]+)?")


@dataclass(frozen=True, kw_only=True, slots=True)
class EventsConfig:
    """What ``bulkmail events`` serves; paths are absolute.

    >>> EventsConfig(path=Path("/e.yaml"), listen=("127.0.0.1", 8026),
    ...              topics=("arn:aws:sns:us-east-1:123456789012:t",),
    ...              suppress=Path("/s.txt"), events=Path("/e.sqlite")).cert_hosts
    ('sns.*.amazonaws.com',)
    """

    path: Path
    listen: tuple[str, int]
    topics: tuple[str, ...]
    suppress: Path
    events: Path
    cert_hosts: tuple[str, ...] = DEFAULT_CERT_HOSTS
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_file(cls, path: Path | str) -> EventsConfig:
        """Read and validate ``path``; raises :class:`~bulkmail.errors.ConfigError`."""
        display = str(path)
        file = Path(path).expanduser()
        data, lines = load_yaml(file, display, what="events", max_bytes=1 << 20)
        base = file.resolve().parent
        c = Checker(display, base, lines)
        m = c.mapping(data, "", _KEYS)
        if not isinstance(data, dict):
            c.raise_problems()
        listen = c.get(m, "listen", _listen) if "listen" in m else ("127.0.0.1", 8026)
        topics_raw = m.get("topics")
        topics: list[str] = []
        if topics_raw is None:
            if "topics" not in c.suggested:
                c.bad("topics", "is required: the SNS topic ARNs whose messages are accepted")
        elif not isinstance(topics_raw, list) or not topics_raw:
            c.bad("topics", "must be a non-empty list of SNS topic ARNs")
        else:
            for i, item in enumerate(topics_raw):
                topic = c.check(item, f"topics[{i}]", _TOPIC)
                if topic is not None:
                    topics.append(topic)
        hosts: tuple[str, ...] = DEFAULT_CERT_HOSTS
        if "cert_hosts" in m:
            raw = m["cert_hosts"]
            if not isinstance(raw, list) or not raw:
                c.bad("cert_hosts", "must be a non-empty list of host patterns")
            else:
                checked = [c.check(h, f"cert_hosts[{i}]", _host) for i, h in enumerate(raw)]
                hosts = tuple(h for h in checked if h is not None)
        suppress = c.require(m, "suppress", _text_list(base))
        events = c.get(m, "events", output_file(base)) or base / f"{file.stem}.events.sqlite"
        tls_cert = tls_key = None
        if "tls" in m:
            tls = c.mapping(m["tls"], "tls", ("cert", "key"))
            for name in ("cert", "key"):
                if isinstance(m["tls"], dict) and name not in tls:
                    c.bad(f"tls.{name}", "is required with tls (PEM files)")
            tls_cert = c.get(tls, "tls.cert", input_file(base))
            tls_key = c.get(tls, "tls.key", input_file(base))
        c.raise_problems()
        assert listen is not None and suppress is not None
        return cls(
            path=file.resolve(),
            listen=listen,
            topics=tuple(topics),
            suppress=suppress,
            events=events,
            cert_hosts=hosts,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )


def _listen(value: Any) -> tuple[str, int]:
    text = one_line(value if not isinstance(value, int) else f"127.0.0.1:{value}").strip()
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise Bad(f"must be HOST:PORT like '127.0.0.1:8026', got {text!r}")
    return host, int(port)


def _text_list(base: Path) -> Callable[[Any], Path]:
    """A plain-text suppression file (one address a line) to create or append to."""
    where = output_file(base)

    def check(value: Any) -> Path:
        path = where(value)
        if path.suffix.lower() == ".csv":
            raise Bad(
                "must be a plain text file (one address a line), not a CSV: bulkmail "
                "appends lines to it; a campaign can list it in 'suppress:' as is"
            )
        return path

    return check


def _host(value: Any) -> str:
    text = string(value).strip()
    if not _HOST.fullmatch(text) or text.startswith("*.") and text.count(".") < 2:
        raise Bad(f"must be a host name pattern like 'sns.*.amazonaws.com', got {text!r}")
    return text.lower()


__all__ = ["EventsConfig"]
