"""From a recipient row to the finished :class:`~bulkmail.mail.message.Message` a provider sends.

Rendering (:mod:`bulkmail.input.render`) fills the templates; composing adds what depends on the
campaign's sending mode. Everything that does not depend on the recipient is prepared once,
in :meth:`Composer.for_campaign`; per recipient only the row's own work is done.

The modes, chosen once per campaign:

- **simple**: the rendered message as is (SES ``Simple`` content, DirectMail).
- **raw**: RFC 5322 bytes in :attr:`Message.raw`, built by one shared
  :class:`~bulkmail.mail.mime.MimeBuilder`. Used when the campaign has ``attachments`` or an
  ``attachment_column``, always for SMTP, and for SES v1 when the message carries headers
  (v1 ``SendEmail`` has no header field). Campaign-wide attachments are read and base64
  encoded once. The SES sending-authorization ARNs (``source_arn``, ``from_arn``,
  ``return_path_arn``) become the ``X-SES-SOURCE-ARN`` / ``X-SES-FROM-ARN`` /
  ``X-SES-RETURN-PATH-ARN`` headers, each written once.
- **stored template**: ``template: {name: X}`` sends :attr:`Message.template` ``X`` with the
  row's fields (and ``email``) as JSON ``template_data``; only the headers
  (``List-Unsubscribe``, ``headers:``) are rendered here.

Inline images: an attachment whose file name the html references as ``cid:NAME`` (for
example ``<img src="cid:logo.png">`` and ``attachments: [logo.png]``) is sent inline with
``Content-ID: <logo.png>``; every other file is a normal attachment. The same rule applies
to a row's file from ``attachment_column``, checked against that row's rendered html.

A row's ``attachment_column`` value is one path, relative to the campaign file's folder; an
empty value means no file for that row. A missing or unreadable file, or a path that leaves
the folder, skips the row with a :class:`RenderProblem` (code ``attachment``); a message
over the provider's size limit is skipped with code ``too_large``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import orjson

from bulkmail.errors import ConfigError
from bulkmail.input.campaign import Campaign
from bulkmail.input.recipients import Recipient, list_columns
from bulkmail.input.render import Renderer, RenderProblem
from bulkmail.mail.message import Message
from bulkmail.mail.mime import (
    SES_V1_RAW_LIMIT,
    SES_V2_RAW_LIMIT,
    Attachment,
    MessageTooLarge,
    MimeBuilder,
    load_attachment,
)

_CID_CHAR = r"[!#-;=?-~]"  # what mime.Attachment accepts in a Content-ID
_CID_NAME = re.compile(f"{_CID_CHAR}+").fullmatch


def inline_cid(filename: str, html: str | None) -> str | None:
    """``filename`` when ``html`` shows it as ``cid:filename``, else ``None``.

    >>> inline_cid("logo.png", '<img src="cid:logo.png">'), inline_cid("logo.png", "cid:logo.png2")
    ('logo.png', None)
    """
    if not html or not _CID_NAME(filename):
        return None
    # The reference ends where an html attribute or CSS url() would end it.
    if re.search(f"cid:{re.escape(filename)}(?=[\"'\\s)>]|$)", html) is None:
        return None
    return filename


class Composer:
    """Turns recipient rows into messages for one campaign.

    >>> composer = Composer.for_campaign(campaign)                    # doctest: +SKIP
    >>> composer.compose(recipient, key=7)                             # doctest: +SKIP
    Message(to='ana@example.com', ...)

    Build it with :meth:`for_campaign`; the constructor takes the parts for tests and custom
    pipelines: ``mime`` turns on raw mode, ``template`` stored-template mode (not both).
    """

    __slots__ = ("_column", "_folder", "_mime", "_template", "renderer")

    def __init__(
        self,
        renderer: Renderer,
        *,
        mime: MimeBuilder | None = None,
        template: str | None = None,
        attachment_column: str | None = None,
        attachment_folder: Path | None = None,
    ) -> None:
        if mime is not None and template is not None:
            raise ValueError("a stored template cannot be sent as raw MIME")
        if attachment_column is not None and (mime is None or attachment_folder is None):
            raise ValueError("attachment_column needs mime and attachment_folder")
        self.renderer = renderer
        self._mime = mime
        self._template = template
        self._column = attachment_column
        self._folder = attachment_folder.resolve() if attachment_folder is not None else None

    @classmethod
    def for_campaign(cls, campaign: Campaign) -> Composer:
        """Compile the templates and prepare the campaign-wide MIME parts, once.

        :raises ConfigError: a combination no provider can send (attachments with a stored
            template or DirectMail, headers with an SES v1 stored template), or campaign
            attachments that cannot be read or alone exceed the provider's size limit.
        """
        provider = campaign.provider
        file = str(campaign.path)
        has_files = bool(campaign.attachments) or campaign.attachment_column is not None
        has_headers = bool(
            campaign.headers or campaign.unsubscribe_url or campaign.unsubscribe_mailto
        )
        stored = campaign.template
        if has_files and stored is not None:
            raise ConfigError(
                "a stored template cannot carry attachments; use subject/text/html instead",
                key="attachments", file=file,
            )  # fmt: skip
        if has_files and provider.name == "directmail":
            raise ConfigError(
                "DirectMail's API cannot send attachments; use provider smtp with "
                "host: directmail",
                key="attachments", file=file,
            )  # fmt: skip
        if stored is not None and provider.name == "ses" and provider.api == "v1" and has_headers:
            raise ConfigError(
                "SES v1 SendTemplatedEmail cannot carry headers (List-Unsubscribe, headers:); "
                "use provider.api: v2",
                key="template", file=file,
            )  # fmt: skip
        renderer = Renderer(
            sender=campaign.sender,
            subject=campaign.subject,
            text=campaign.text,
            html=campaign.html,
            reply_to=campaign.reply_to,
            headers=campaign.headers,
            unsubscribe_url=campaign.unsubscribe_url,
            unsubscribe_mailto=campaign.unsubscribe_mailto,
            tags=campaign.tags,
            configuration_set=campaign.configuration_set,
            sources=campaign.sources,
            headers_only=stored is not None,
        )
        raw = stored is None and (
            has_files
            or provider.name == "smtp"
            or (provider.name == "ses" and provider.api == "v1" and has_headers)
        )
        if not raw:
            return cls(renderer, template=stored)
        return cls(
            renderer,
            mime=_campaign_builder(campaign),
            attachment_column=campaign.attachment_column,
            attachment_folder=campaign.path.parent,
        )

    @property
    def variables(self) -> frozenset[str]:
        """The columns a list must have (template variables and the attachment column)."""
        if self._column is None:
            return self.renderer.variables
        return self.renderer.variables | {self._column}

    def check_list(self, campaign: Campaign) -> None:
        """Refuse a CSV list whose header lacks a column the templates use, before sending.

        A variable no column provides would skip every row; that is the campaign's mistake,
        not the rows'. JSONL rows carry their own keys, so they keep the per-row check.

        :raises ConfigError: naming the variable, the template part and the columns found.
        """
        columns = list_columns(campaign.recipients)
        if columns is None:
            return
        missing = self.renderer.missing_columns(columns)
        if self._column is not None and self._column not in columns:
            missing.append(("attachment_column", self._column))
        if not missing:
            return
        found = ", ".join(repr(c) for c in columns)
        uses = "; ".join(
            f"{part} {name!r}"
            if part == "attachment_column"
            else f"template {part!r} uses {name!r}"
            for part, name in missing
        )
        part = missing[0][0]
        source = campaign.sources.get(part)
        separate = source is not None and source != campaign.sources.get("subject")
        raise ConfigError(
            f"{uses}, but the list {campaign.recipients.name} has no such column "
            f"(columns found: {found}); every row would be skipped",
            file=source if separate else str(campaign.path),
            key=None if separate else part,
        )

    @property
    def raw_size_hint(self) -> int | None:
        """Roughly how many bytes each message holds when raw (``None``: not raw).

        Raw messages are built when composed, so a queue of composed messages holds this
        many bytes per entry; a pipeline that composes ahead should bound its queue by it.
        """
        if self._mime is None:
            return None
        return self._mime.shared_size + 8192

    def compose(self, recipient: Recipient, *, key: int | None = None) -> Message | RenderProblem:
        """The message for one row, or the :class:`RenderProblem` that skips it."""
        message = self.renderer.render(recipient, key=key)
        if isinstance(message, RenderProblem):
            return message
        if self._template is not None:
            return self._templated(message, recipient)
        if self._mime is not None:
            return self._raw(self._mime, message, recipient)
        return message

    # -- modes ----------------------------------------------------------------------------

    def _templated(self, message: Message, recipient: Recipient) -> Message | RenderProblem:
        try:
            data = orjson.dumps({**recipient.fields, "email": recipient.email})
        except orjson.JSONEncodeError as exc:
            return RenderProblem("render_error", f"template data: {exc}")
        return replace(message, template=self._template, template_data=data.decode())

    def _raw(
        self, mime: MimeBuilder, message: Message, recipient: Recipient
    ) -> Message | RenderProblem:
        extra: tuple[Attachment, ...] = ()
        if self._column is not None:
            found = self._row_attachment(recipient, message.html, mime.max_bytes)
            if isinstance(found, RenderProblem):
                return found
            if found is not None:
                extra = (found,)
        try:
            raw = mime.build(message, per_recipient=extra)
        except MessageTooLarge as exc:
            return RenderProblem("too_large", str(exc))
        except ValueError as exc:  # an address or header the MIME builder refuses
            return RenderProblem("bad_message", str(exc))
        return replace(message, raw=raw)

    def _row_attachment(
        self, recipient: Recipient, html: str | None, limit: int | None
    ) -> Attachment | RenderProblem | None:
        column = self._column
        folder = self._folder
        assert column is not None and folder is not None
        if column not in recipient.fields:
            return RenderProblem(
                "missing_field", f"attachment_column {column!r} is not a column of the row"
            )
        value = recipient.fields[column]
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            return RenderProblem("attachment", f"column {column!r} must hold a file path")
        name = value.strip()
        # Reading here blocks the event loop for the read; rows name small files, and the
        # engine composes ahead of the limiter, so sends keep flowing meanwhile.
        try:
            path = (folder / name).resolve(strict=True)
        except (OSError, RuntimeError):
            return RenderProblem("attachment", f"attachment file {name!r} not found")
        if not path.is_relative_to(folder):
            return RenderProblem(
                "attachment", f"attachment file {name!r} is outside the campaign's folder"
            )
        try:
            if not path.is_file():
                return RenderProblem("attachment", f"attachment {name!r} is not a file")
            size = path.stat().st_size
            if limit is not None and size > limit:  # refuse before reading it
                return RenderProblem(
                    "too_large", str(MessageTooLarge(size, limit, what=f"attachment {name!r}"))
                )
            return load_attachment(path, inline_cid=inline_cid(path.name, html))
        except OSError as exc:
            return RenderProblem(
                "attachment", f"attachment file {name!r} cannot be read: {exc.strerror}"
            )
        except ValueError as exc:  # a file name MIME cannot carry
            return RenderProblem("attachment", str(exc))


def _campaign_builder(campaign: Campaign) -> MimeBuilder:
    """The campaign's one :class:`MimeBuilder`: attachments read and encoded here, once."""
    provider = campaign.provider
    max_bytes: int | None = None
    if provider.name == "ses":
        max_bytes = SES_V1_RAW_LIMIT if provider.api == "v1" else SES_V2_RAW_LIMIT
    arns = {
        "X-SES-SOURCE-ARN": campaign.source_arn,
        "X-SES-FROM-ARN": campaign.from_arn,
        "X-SES-RETURN-PATH-ARN": campaign.return_path_arn,
    }
    file = str(campaign.path)
    attachments: list[Attachment] = []
    for path in campaign.attachments:
        try:
            cid = inline_cid(path.name, campaign.html)
            attachments.append(load_attachment(path, inline_cid=cid))
        except OSError as exc:
            raise ConfigError(
                f"attachment {str(path)!r} cannot be read: {exc.strerror}",
                file=file, key="attachments",
            ) from exc  # fmt: skip
        except ValueError as exc:
            raise ConfigError(str(exc), file=file, key="attachments") from exc
    extra: list[tuple[str, str]] = []
    if provider.name == "smtp":
        # Over SMTP the configuration set and message tags travel as SES's own headers
        # (other relays ignore them); the API providers send them as request fields.
        if campaign.configuration_set:
            extra.append(("X-SES-CONFIGURATION-SET", campaign.configuration_set))
        if campaign.tags:
            tags = ", ".join(f"{k}={v}" for k, v in campaign.tags.items())
            extra.append(("X-SES-MESSAGE-TAGS", tags))
    try:
        return MimeBuilder(
            attachments=attachments,
            extra_headers=extra,
            max_bytes=max_bytes,
            ses_arn_headers={name: arn for name, arn in arns.items() if arn},
        )
    except ValueError as exc:  # MessageTooLarge included: the files alone are over the limit
        raise ConfigError(str(exc), file=file, key="attachments") from exc


__all__ = ["Composer", "inline_cid"]
