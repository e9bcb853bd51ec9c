"""A validated campaign as data in Redis, and back, so a worker on any machine can compose.

The enqueuer stores the :class:`~bulkmail.input.campaign.Campaign` *after* validation: its
fields as JSON (template sources already read, provider settings, tags, headers) and the
bytes of each attachment; the worker rebuilds an equal ``Campaign`` with the attachments
written to a private temporary folder, and makes its own
:class:`~bulkmail.input.compose.Composer` from it. This was chosen over storing the YAML
and re-validating it on the worker: the worker needs none of the campaign's other files
(list, suppression file, results), and what it sends is exactly what was checked.

Nothing secret is in a campaign (credentials come only from the environment; SMTP names
the *variable* holding its password), so nothing secret is stored. ``attachment_column``
(a file per row, read from the campaign's folder) is refused: those files are on one machine.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from bulkmail.errors import ConfigError
from bulkmail.input.campaign import Campaign
from bulkmail.providers.config import ProviderConfig

_PATHS = ("path", "recipients", "suppress", "results", "journal")
_MAPPINGS = ("sources", "tags", "headers", "directmail")


def campaign_to_data(campaign: Campaign) -> tuple[bytes, list[bytes]]:
    """``(definition JSON, attachment bytes in order)``.

    :raises ConfigError: the campaign uses ``attachment_column``, or an attachment is unreadable.
    """
    if campaign.attachment_column is not None:
        raise ConfigError(
            "attachment_column is not supported by the fleet: per-row files live on one "
            "machine; attach campaign-wide files with attachments:",
            file=str(campaign.path),
            key="attachment_column",
        )
    doc: dict[str, Any] = {}
    for f in dataclasses.fields(campaign):
        value = getattr(campaign, f.name)
        if f.name in _PATHS:
            value = None if value is None else str(value)
        elif f.name in _MAPPINGS:
            value = dict(value)
        elif f.name == "provider":
            value = dataclasses.asdict(value)
        elif f.name == "reply_to":
            value = list(value)
        elif f.name == "attachments":
            value = [p.name for p in value]
        doc[f.name] = value
    files: list[bytes] = []
    for path in campaign.attachments:
        try:
            files.append(path.read_bytes())
        except OSError as exc:
            raise ConfigError(
                f"attachment {str(path)!r} cannot be read: {exc.strerror}",
                file=str(campaign.path),
                key="attachments",
            ) from exc
    return orjson.dumps(doc), files


def campaign_from_data(
    definition: bytes, files: list[bytes], folder: Path | None = None
) -> tuple[Campaign, tempfile.TemporaryDirectory[str] | None]:
    """Rebuild the campaign; attachments go to ``folder`` (default: a new temporary folder,
    returned so the caller can remove it when done)."""
    doc: dict[str, Any] = orjson.loads(definition)
    holder = None
    if folder is None:
        holder = tempfile.TemporaryDirectory(prefix="bulkmail-worker-")
        folder = Path(holder.name)
    fields: dict[str, Any] = {}
    for key, value in doc.items():
        if key in _PATHS:
            fields[key] = None if value is None else Path(value)
        elif key in _MAPPINGS:
            fields[key] = MappingProxyType(dict(value))
        elif key == "provider":
            fields[key] = ProviderConfig(**value)
        elif key == "reply_to":
            fields[key] = tuple(value)
        elif key == "attachments":
            paths: list[Path] = []
            for i, (name, data) in enumerate(zip(value, files, strict=True)):
                where = folder / str(i)
                where.mkdir(parents=True, exist_ok=True)
                (where / name).write_bytes(data)
                paths.append(where / name)
            fields[key] = tuple(paths)
        else:
            fields[key] = value
    # The composer reads nothing beside the campaign file but its attachments (written above).
    fields["path"] = folder / "campaign.yaml"
    return Campaign(**fields), holder


def overridden(campaign: Campaign, changes: Mapping[str, Any]) -> Campaign:
    """``campaign`` with some fields replaced (the worker's ``--endpoint``)."""
    return dataclasses.replace(campaign, **changes)


__all__ = ["campaign_from_data", "campaign_to_data", "overridden"]
