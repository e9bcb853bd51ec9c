"""HTTP details the API providers share: the form content type and ``Retry-After``."""

from __future__ import annotations

from collections.abc import Mapping

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds only), or ``None``.

    >>> retry_after({"Retry-After": "2"}), retry_after({"Retry-After": "soon"}), retry_after({})
    (2.0, None, None)
    """
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


__all__ = ["FORM_CONTENT_TYPE", "retry_after"]
