"""Templates compiled once per campaign, then one :class:`~bulkmail.mail.message.Message`
per recipient.

>>> from bulkmail.input.recipients import Recipient
>>> r = Renderer(sender="News <news@example.com>", subject="Hi {{ first_name }}",
...              text="Hello {{ first_name }}", html=None)
>>> row = Recipient(line=2, email="ana@example.com", key="ana@example.com",
...                 fields={"email": "ana@example.com", "first_name": "Ana"})
>>> r.render(row).subject
'Hi Ana'
>>> r.render(Recipient(line=3, email="bo@example.com", key="bo@example.com", fields={})).reason
"template 'subject' uses 'first_name' but the row has no such column"

Templates are Jinja2 with ``StrictUndefined``: a row that lacks a variable is a
:class:`RenderProblem`, never a half-filled message. HTML autoescapes recipient data; the
subject and text do not. Every column of the row is a variable, and so is ``email``.

Templates are the campaign author's (trusted) text and are not sandboxed; recipient data is
only ever data, never template source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jinja2
from jinja2 import meta

from bulkmail.errors import ConfigError
from bulkmail.input._jinja import render_function
from bulkmail.input.recipients import Recipient
from bulkmail.mail.headers import HEADER_NAME, RESERVED_HEADERS
from bulkmail.mail.message import Message

# Everything str.splitlines() breaks on, plus NUL: the email package refuses a header value
# that splitlines() would split, so any of these would crash MIME building later.
_LINE_BREAK = re.compile("[\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]").search
_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")
_URL_BAD = re.compile(r"[\s<>\x00-\x1f\x7f]").search
_TEMPLATE_MARKS = ("{{", "{%", "{#")


_EMPTY_TAGS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RenderProblem:
    """Why one recipient gets no message: ``code`` for machines, ``reason`` for people."""

    code: str
    reason: str


# A compiled part: either a constant string (no template syntax) or a render function.
_Part = str | Callable[[dict[str, Any]], str]


class Renderer:
    """Compile a campaign's templates once; :meth:`render` one :class:`Message` per row.

    ``subject``, ``text``, ``html``, header values and ``unsubscribe_url`` are Jinja2 sources;
    ``sources`` maps a part name (``"subject"``, ``"text"``, ``"html"``) to the file it came
    from, for error messages. ``sender``, ``reply_to``, ``unsubscribe_mailto``, ``tags`` and
    ``configuration_set`` are constants shared by every message.

    ``headers_only=True`` is for a provider-stored template, which holds the subject and
    bodies itself: ``subject`` must be empty and ``text``/``html`` ``None``, and each message
    carries only the per-row headers (``List-Unsubscribe`` and friends) and the constants.
    """

    __slots__ = (
        "_configuration_set",
        "_fixed_headers",
        "_globals",
        "_per_row_headers",
        "_html",
        "_reply_to",
        "_sender",
        "_sources",
        "_subject",
        "_tags",
        "_text",
        "_unsubscribe",
        "_variables",
        "_part_variables",
    )

    def __init__(
        self,
        *,
        sender: str,
        subject: str,
        text: str | None,
        html: str | None,
        reply_to: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        unsubscribe_url: str | None = None,
        unsubscribe_mailto: str | None = None,
        tags: Mapping[str, str] | None = None,
        configuration_set: str | None = None,
        sources: Mapping[str, str] | None = None,
        headers_only: bool = False,
    ) -> None:
        self._sources = dict(sources or {})
        if headers_only:
            if subject or text is not None or html is not None:
                raise ConfigError(
                    "a stored template replaces subject/text/html; remove them", key="template"
                )
        elif text is None and html is None:
            raise ConfigError("a campaign needs a text or an html body", key="text")
        _constant("sender", sender)
        if not sender.strip():
            raise ConfigError("must not be empty", key="sender")
        if isinstance(reply_to, str):
            reply_to = (reply_to,)
        for i, address in enumerate(reply_to):
            _constant(f"reply_to[{i}]", address)
        for name, value in (tags or {}).items():
            _constant(f"tags.{name}", name)
            _constant(f"tags.{name}", value)
        if configuration_set is not None:
            _constant("configuration_set", configuration_set)

        plain = jinja2.Environment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        escaped = jinja2.Environment(
            undefined=jinja2.StrictUndefined, autoescape=True, keep_trailing_newline=True
        )
        # Both environments start from the same default globals.
        self._globals: dict[str, Any] = dict(plain.globals)
        variables: set[str] = set()
        part_variables: dict[str, frozenset[str]] = {}

        def compile_part(part: str, source: str, env: jinja2.Environment) -> _Part:
            if not any(mark in source for mark in _TEMPLATE_MARKS):
                return source
            where = self._where(part)
            try:
                used = meta.find_undeclared_variables(env.parse(source))
                part_variables[part] = frozenset(used)
                variables.update(used)
                return render_function(env.from_string(source), escape=env.autoescape is True)
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(
                    f"template syntax error: {exc.message}", **where, line=exc.lineno
                ) from exc

        self._sender = sender
        self._reply_to = tuple(reply_to)
        self._tags = MappingProxyType(dict(tags)) if tags else _EMPTY_TAGS
        self._configuration_set = configuration_set
        self._subject = compile_part("subject", subject, plain)
        if isinstance(self._subject, str):
            _constant("subject", self._subject)
        self._text = None if text is None else compile_part("text", text, plain)
        self._html = None if html is None else compile_part("html", html, escaped)

        fixed: list[tuple[str, str]] = []
        templated: list[tuple[str, _Part]] = []
        for name, value in (headers or {}).items():
            if not HEADER_NAME.fullmatch(name):
                raise ConfigError("not a valid header name", key=f"headers.{name}")
            if name.lower() in RESERVED_HEADERS:
                raise ConfigError(
                    "bulkmail writes this header itself; it cannot be set here",
                    key=f"headers.{name}",
                )
            compiled = compile_part(f"headers.{name}", value, plain)
            if isinstance(compiled, str):
                _constant(f"headers.{name}", compiled)
                fixed.append((name, compiled))
            else:
                templated.append((name, compiled))
        self._unsubscribe = self._compile_unsubscribe(
            unsubscribe_url, unsubscribe_mailto, plain, compile_part
        )
        if isinstance(self._unsubscribe, str):
            fixed.extend(_unsubscribe_headers(self._unsubscribe, unsubscribe_url is not None))
        #: Constant headers, one tuple shared by every message when nothing is per row.
        self._fixed_headers = tuple(fixed)
        self._per_row_headers: tuple[tuple[str, _Part], ...] | None = (
            tuple(templated) if templated or callable(self._unsubscribe) else None
        )
        self._variables = frozenset(variables)
        self._part_variables = MappingProxyType(part_variables)

    @property
    def variables(self) -> frozenset[str]:
        """Names the templates use but do not define: the columns a list must have."""
        return self._variables

    @property
    def part_variables(self) -> Mapping[str, frozenset[str]]:
        """:attr:`variables` by template part (``subject``, ``text``, ``headers.X-Id``...)."""
        return self._part_variables

    def missing_columns(self, columns: Sequence[str]) -> list[tuple[str, str]]:
        """``(part, variable)`` for each variable that a row with only ``columns`` lacks
        (``email`` and the template globals such as ``range`` are always there)."""
        have = {*columns, "email", *self._globals}
        return [
            (part, name)
            for part, used in self._part_variables.items()
            for name in sorted(used - have)
        ]

    def render(self, recipient: Recipient, *, key: int | None = None) -> Message | RenderProblem:
        """One :class:`Message` for ``recipient``, or the :class:`RenderProblem` that stops it."""
        # One shared variables dict for every part: the environment globals (range, dict,
        # ...), then the row's columns, then ``email``.
        context = self._globals.copy()
        context.update(recipient.fields)
        context["email"] = recipient.email
        part = "subject"
        try:
            subject = self._subject
            if not isinstance(subject, str):
                subject = subject(context)
                if _LINE_BREAK(subject):
                    return RenderProblem(
                        "header_injection", "rendered subject contains a line break"
                    )
            part = "text"
            text = self._text
            if text is not None and not isinstance(text, str):
                text = text(context)
            part = "html"
            html = self._html
            if html is not None and not isinstance(html, str):
                html = html(context)
            headers = self._fixed_headers
            if self._per_row_headers is not None:
                part = "headers"
                filled = self._fill_headers(self._per_row_headers, context)
                if isinstance(filled, RenderProblem):
                    return filled
                headers = filled
        except jinja2.UndefinedError as exc:
            return _missing(part, exc)
        except Exception as exc:
            # A template can fail on one row's data (``{{ amount + 1 }}`` with a text
            # amount); that row is skipped, the campaign goes on.
            return RenderProblem("render_error", f"template {part!r}: {exc}")
        return Message(
            to=recipient.email,
            sender=self._sender,
            subject=subject,
            text=text,
            html=html,
            reply_to=self._reply_to,
            headers=headers,
            tags=self._tags,
            configuration_set=self._configuration_set,
            key=key,
        )

    # -- helpers --------------------------------------------------------------------------

    def _where(self, part: str) -> dict[str, str]:
        source = self._sources.get(part)
        return {"file": source} if source is not None else {"key": part}

    def _compile_unsubscribe(
        self,
        url: str | None,
        mailto: str | None,
        env: jinja2.Environment,
        compile_part: Callable[[str, str, jinja2.Environment], _Part],
    ) -> _Part | None:
        """The List-Unsubscribe value: a constant, a function of the row, or ``None``."""
        if url is None and mailto is None:
            return None
        mail = ""
        if mailto is not None:
            mail = mailto if mailto.lower().startswith("mailto:") else f"mailto:{mailto}"
            if _URL_BAD(mail) or "@" not in mail:
                raise ConfigError("not a usable mailto address", key="unsubscribe_mailto")
            mail = f"<{mail}>"
        if url is None:
            return mail
        if not url.startswith("{") and not url.startswith("https://"):
            raise ConfigError("must be an https:// URL (RFC 8058 one-click)", key="unsubscribe_url")
        compiled = compile_part("unsubscribe_url", url, env)
        if isinstance(compiled, str):
            if _URL_BAD(compiled):
                raise ConfigError(
                    "contains spaces, <, > or control characters", key="unsubscribe_url"
                )
            return f"<{compiled}>, {mail}" if mail else f"<{compiled}>"
        suffix = f", {mail}" if mail else ""

        def value(context: dict[str, Any]) -> str:
            rendered = compiled(context)
            if not rendered.startswith("https://") or _URL_BAD(rendered):
                raise _BadUrl(rendered)
            return f"<{rendered}>{suffix}"

        return value

    def _fill_headers(
        self, templated: tuple[tuple[str, _Part], ...], context: dict[str, Any]
    ) -> tuple[tuple[str, str], ...] | RenderProblem:
        out: list[tuple[str, str]] = list(self._fixed_headers)
        for name, compiled in templated:
            value = compiled if isinstance(compiled, str) else compiled(context)
            if _LINE_BREAK(value):
                return RenderProblem(
                    "header_injection", f"rendered header {name!r} contains a line break"
                )
            out.append((name, value))
        unsubscribe = self._unsubscribe
        if callable(unsubscribe):
            try:
                value = unsubscribe(context)
            except _BadUrl as exc:
                if _LINE_BREAK(exc.url):
                    return RenderProblem(
                        "header_injection", "rendered unsubscribe URL contains a line break"
                    )
                return RenderProblem(
                    "bad_unsubscribe_url",
                    "rendered unsubscribe URL is not an https:// URL without spaces, < or >",
                )
            out.extend(_unsubscribe_headers(value, True))
        return tuple(out)


class _BadUrl(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _unsubscribe_headers(value: str, one_click: bool) -> list[tuple[str, str]]:
    headers = [("List-Unsubscribe", value)]
    if one_click:
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return headers


def _constant(key: str, value: str) -> None:
    if _LINE_BREAK(value):
        raise ConfigError("must not contain a line break (CR, LF) or NUL", key=key)


def _missing(part: str, exc: jinja2.UndefinedError) -> RenderProblem:
    match = _UNDEFINED_NAME.match(exc.message or "")
    if match:
        return RenderProblem(
            "missing_field",
            f"template {part!r} uses {match[1]!r} but the row has no such column",
        )
    return RenderProblem("missing_field", f"template {part!r}: {exc.message}")


__all__ = ["RenderProblem", "Renderer"]
