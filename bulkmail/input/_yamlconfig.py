"""YAML config files whose every problem names the file, the dotted key and the line.

The generic half of config validation, with nothing campaign-specific in it:

- :func:`load_yaml` reads a document and records the line of every key path in it;
  :func:`line_of` finds the line for a key path (or its nearest recorded parent).
- Checkers: plain functions ``value -> checked value`` that raise :class:`Bad` with a message
  saying what is wrong, never where (``string``, ``one_line``, ``choice(...)``, ``pattern(...)``,
  ``integer(...)``, ``address``, ``mailbox``, ``input_file(base)``, ``text_file(base, limit)``...).
- :class:`Checker` walks a parsed document, turning each :class:`Bad` into a
  :class:`~bulkmail.errors.ConfigError` with file, key and line, and collecting every problem
  (unknown keys with a "did you mean", keys that look like credentials) before raising them.

>>> check = integer(1, 10)
>>> check(3)
3
>>> check("3")
Traceback (most recent call last):
...
bulkmail.input._yamlconfig.Bad: must be a whole number, got str
"""

from __future__ import annotations

import datetime as _dt
import difflib
import re
from collections.abc import Callable
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bulkmail.errors import ConfigError
from bulkmail.input.recipients import plain_address

if TYPE_CHECKING:
    import yaml

T = TypeVar("T")

_CREDENTIAL = re.compile(
    r"secret|passw|passphrase|access_?key|api_?key|token|private_?key|credential|(^|_)pwd($|_)"
)
_LAST_PART = re.compile(r"(\.[^.\[\]]*|\[\d+\])$")  # "a.b[2]" -> "a.b" -> "a"

# ---------------------------------------------------------------------------------- YAML + lines


def load_yaml(file: Path, display: str, *, what: str, max_bytes: int) -> tuple[Any, dict[str, int]]:
    """The document and the line (1-based) of every key path in it; never a traceback.

    ``what`` names the kind of file in messages (``campaign`` -> "campaign file not found").
    An empty document is refused.
    """
    try:
        if file.stat().st_size > max_bytes:
            raise ConfigError(
                f"is larger than {max_bytes >> 20} MB; is this really a {what} file?", file=display
            )
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found", file=display) from None
    except IsADirectoryError:
        raise ConfigError(f"is a directory, not a {what} file", file=display) from None
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror}", file=display) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("is not UTF-8", file=display, line=line) from None
    import yaml  # here, not at the top: a fleet worker never parses YAML (~80 ms import)

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = "; ".join(str(s) for s in (exc.context, exc.problem) if s)
        if mark is None:
            raise ConfigError(f"invalid YAML: {reason}", file=display) from None
        raise ConfigError(
            f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {reason}",
            file=display,
            line=mark.line + 1,
        ) from None
    except yaml.YAMLError as exc:  # reader errors (control characters) carry no line mark
        raise ConfigError(f"invalid YAML: {exc}", file=display) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=display) from None
    finally:
        loader.dispose()
    if node is None or data is None:
        raise ConfigError(f"is empty; expected a mapping of {what} keys", file=display, line=1)
    lines: dict[str, int] = {}
    _record_lines(node, "", lines, set())
    return data, lines


def _record_lines(root: yaml.Node, path: str, lines: dict[str, int], seen: set[int]) -> None:
    """Record the line of every key (``a.b[2]``) under ``root`` into ``lines``."""
    import yaml  # once per file, not once per node

    def walk(node: yaml.Node, path: str) -> None:
        if id(node) in seen:  # an alias: its keys are recorded where the anchor is; no blow-up
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    child = f"{path}.{key.value}" if path else str(key.value)
                    lines.setdefault(child, key.start_mark.line + 1)
                    walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = f"{path}[{i}]"
                lines.setdefault(child, item.start_mark.line + 1)
                walk(item, child)

    walk(root, path)


def line_of(lines: dict[str, int], key: str) -> int | None:
    """The line of ``key`` (``a.b[2]``), else of its nearest parent that has one (an alias)."""
    while key:
        if key in lines:
            return lines[key]
        parent = _LAST_PART.sub("", key)
        if parent == key:
            return None
        key = parent
    return None


def looks_like_credential(name: str) -> bool:
    """``aws_secret_access_key``, ``password``, ``api-key``, ``token``... (any case)."""
    return _CREDENTIAL.search(name.lower().replace("-", "_")) is not None


# ------------------------------------------------------------------------------- value checkers


class Bad(Exception):
    """A value is wrong; the message says how. :class:`Checker` adds file, key and line."""


def describe(value: Any) -> str:
    """What YAML made of a value, for "must be X, got Y" messages."""
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


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Bad(f"must be a string, got {describe(value)}")
    return value


def scalar_text(value: Any) -> str:
    """Text, or a number YAML parsed (``year: 2024``) as its text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return string(value)


def one_line(value: Any) -> str:
    """Non-blank text without CR or LF: safe to put in a mail header."""
    text = string(value)
    if "\r" in text or "\n" in text:
        raise Bad("must not contain CR or LF (it goes into a mail header)")
    if not text.strip():
        raise Bad("must not be empty")
    return text


def choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, _dt.date):  # 2015-11-23 unquoted is a date to YAML
            value = value.isoformat()
        if value not in options:
            shown = value if isinstance(value, str) else describe(value)
            raise Bad(f"must be one of {', '.join(options)}; got {shown!r}")
        return str(value)

    return check


def pattern(regex: str, rule: str) -> Callable[[Any], str]:
    """Text that matches ``regex`` in full; ``rule`` says what that means to a person."""
    compiled = re.compile(regex)

    def check(value: Any) -> str:
        text = string(value)
        if not compiled.fullmatch(text):
            raise Bad(f"{rule}; got {text!r}")
        return text

    return check


def integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Bad(f"must be a whole number, got {describe(value)}")
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"between {low} and {high}"
            raise Bad(f"must be {span}, got {value}")
        return value

    return check


def address(value: Any, *, display_name: bool = False) -> str:
    """``user@example.com`` (or ``Name <user@example.com>`` if ``display_name``), one address."""
    text = one_line(value).strip()
    name, addr = parseaddr(text)
    if len(getaddresses([text])) != 1 or not addr:
        raise Bad(f"must be one address like 'Name <user@example.com>', got {text!r}")
    if name and not display_name:
        raise Bad(f"must be a bare address like 'user@example.com', got {text!r}")
    if plain_address(addr):  # what email-validator would accept, without importing it
        return text
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(addr, check_deliverability=False)
    except EmailNotValidError as exc:
        raise Bad(f"{addr!r} is not a valid address: {exc}") from None
    return text


def mailbox(value: Any) -> str:
    """An address that may carry a display name: ``News <news@example.com>``."""
    return address(value, display_name=True)


def input_file(base: Path) -> Callable[[Any], Path]:
    """An existing, readable regular file; relative paths are relative to ``base``."""

    def check(value: Any) -> Path:
        text = one_line(value)
        path = base / Path(text).expanduser()
        try:
            if path.is_dir():
                raise Bad(f"{text!r} is a directory, not a file")
            with path.open("rb"):
                pass
        except FileNotFoundError:
            raise Bad(f"file not found: {text!r} (looked for {str(path)!r})") from None
        except OSError as exc:
            raise Bad(f"{text!r} cannot be read: {exc.strerror}") from None
        return path

    return check


def text_file(base: Path, max_bytes: int) -> Callable[[Any], str]:
    """The UTF-8 text of an :func:`input_file` no larger than ``max_bytes``."""
    find = input_file(base)

    def check(value: Any) -> str:
        path = find(value)
        try:
            if path.stat().st_size > max_bytes:
                raise Bad(f"{str(path)!r} is larger than {max_bytes >> 20} MB")
            raw = path.read_bytes()
        except OSError as exc:
            raise Bad(f"{str(path)!r} cannot be read: {exc.strerror}") from None
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Bad(
                f"{str(path)!r} is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                f"{exc.start}); save it as UTF-8"
            ) from None

    return check


def output_file(base: Path) -> Callable[[Any], Path]:
    """A path to create or append to: not a directory, in a directory that exists."""

    def check(value: Any) -> Path:
        text = one_line(value)
        path = base / Path(text).expanduser()
        if path.is_dir():
            raise Bad(f"{text!r} is a directory; give a file name")
        if not path.parent.is_dir():
            raise Bad(f"directory {str(path.parent)!r} does not exist")
        return path

    return check


# ------------------------------------------------------------------------------------- checker


class Checker:
    """Walks a parsed document, collecting every problem instead of stopping at the first.

    Keys are dotted paths (``provider.region``, ``reply_to[0]``); a key starting with ``--``
    is a command-line flag and gets no file or line. Relative paths are relative to ``base``.
    Subclasses say what a refused credential key should do instead (:attr:`credential_hint`)
    and which names only look like one.
    """

    credential_hint = "looks like a credential; remove this key"
    not_credentials: frozenset[str] = frozenset()

    def __init__(self, display: str, base: Path, lines: dict[str, int]) -> None:
        self.display = display
        self.base = base  # relative paths in the document are relative to this directory
        self.lines = lines
        self.problems: list[ConfigError] = []
        self.suggested: set[str] = set()  # keys offered by "did you mean": not also "required"

    def bad(self, key: str, message: str) -> None:
        if key.startswith("--"):
            self.problems.append(ConfigError(message, key=key))
        else:
            line = line_of(self.lines, key)
            self.problems.append(ConfigError(message, file=self.display, key=key, line=line))

    def raise_problems(self) -> None:
        if len(self.problems) == 1:
            raise self.problems[0]
        if self.problems:
            listing = "\n".join(f"  {p}" for p in self.problems)
            raise ConfigError(f"{len(self.problems)} problems:\n{listing}", file=self.display)

    def check(self, value: Any, key: str, check: Callable[[Any], T]) -> T | None:
        """``check(value)``, or None if it is wrong (then the problem is recorded)."""
        try:
            return check(value)
        except Bad as exc:
            self.bad(key, str(exc))
            return None

    def get(self, m: dict[str, Any], key: str, check: Callable[[Any], T]) -> T | None:
        """Check the entry of ``m`` named by the last part of ``key``; None if absent."""
        name = key.rpartition(".")[2]
        return self.check(m[name], key, check) if name in m else None

    def require(self, m: dict[str, Any], key: str, check: Callable[[Any], T]) -> T | None:
        """:meth:`get`, reporting "is required" when absent (unless it was just suggested)."""
        if key.rpartition(".")[2] not in m:
            if key not in self.suggested:
                self.bad(key, "is required")
            return None
        return self.get(m, key, check)

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        """The known, non-null keys of a mapping; unknown and credential-like keys are reported."""
        if not isinstance(value, dict):
            self.bad(key or "(top level)", f"must be a mapping of keys, got {describe(value)}")
            return {}
        known: dict[str, Any] = {}
        for name, item in value.items():
            where = f"{key}.{name}" if key else str(name)
            if not isinstance(name, str):
                self.bad(where, f"keys must be text, got {describe(name)}")
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
        """Report (never echoing the value) and return True if ``name`` looks like a secret."""
        if name in self.not_credentials or not looks_like_credential(name):
            return False
        self.bad(where, self.credential_hint)
        return True

    def pairs(self, raw: Any, key: str) -> list[tuple[str, Any]]:
        """The entries of a free-form mapping (any names), credential-like names refused."""
        if raw is None:
            return []
        if not isinstance(raw, dict):
            self.bad(key, f"must be a mapping, got {describe(raw)}")
            return []
        out = []
        for name, value in raw.items():
            if not isinstance(name, str):
                self.bad(f"{key}.{name}", f"names must be text, got {describe(name)}")
            elif not self.credential(name, f"{key}.{name}"):
                out.append((name, value))
        return out

    def text(self, m: dict[str, Any], key: str, max_bytes: int) -> tuple[str | None, str | None]:
        """``key: text`` inline or ``key: {file: path}`` read as UTF-8: (text, where it came from).

        Where is the config file's display name, or the file as written, relative to the
        display name's directory. (None, None) if absent or wrong.
        """
        value = m.get(key)
        if value is None:
            return None, None
        if isinstance(value, str):
            if len(value.encode()) > max_bytes:
                self.bad(key, f"is larger than {max_bytes >> 20} MB")
                return None, None
            return value, self.display
        if not isinstance(value, dict):
            self.bad(key, f"must be text or {{file: path}}, got {describe(value)}")
            return None, None
        spec = self.mapping(value, key, ("file",))
        if "file" not in spec:
            if "file" not in value and f"{key}.file" not in self.suggested:
                self.bad(key, "needs 'file: path' (or give the text inline)")
            return None, None
        text = self.get(spec, f"{key}.file", text_file(self.base, max_bytes))
        if text is None:
            return None, None
        written = Path(spec["file"]).expanduser()
        return text, str(written if written.is_absolute() else Path(self.display).parent / written)
