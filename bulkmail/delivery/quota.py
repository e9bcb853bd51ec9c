"""``rate: auto``: the account's quota, read from the provider before anything is sent."""

from __future__ import annotations

from bulkmail.errors import ConfigError, FatalProviderError
from bulkmail.providers.base import Provider


async def resolve_rate(
    provider: Provider, rate: float | None, daily_limit: int | None, *, file: str
) -> tuple[float, int | None]:
    """``(rate, daily_limit)`` to run with: the configured rate, or the provider's quota.

    With ``rate`` ``None`` (``auto``) the rate is the account's maximum send rate, and the
    daily limit is capped by what is left of the account's 24-hour quota.

    >>> import asyncio
    >>> asyncio.run(resolve_rate(None, 14.0, None, file="c.yaml"))  # type: ignore[arg-type]
    (14.0, None)
    """
    if rate is not None:
        return rate, daily_limit
    try:
        quota = await provider.get_quota()
    except OSError as exc:  # ConnectionError / PermissionError from the provider
        raise FatalProviderError(f"rate: auto could not read the quota: {exc}") from None
    if quota is None:
        raise ConfigError(
            "rate: auto needs a provider that reports its quota; set a number",
            file=file,
            key="rate",
        )
    remaining = quota.remaining_today
    if remaining is not None:
        if remaining < 1:
            raise FatalProviderError(
                "the account's 24-hour quota is used up; resume later", code="DailyQuota"
            )
        daily_limit = int(min(daily_limit or remaining, remaining))
    return quota.max_send_rate, daily_limit


__all__ = ["resolve_rate"]
