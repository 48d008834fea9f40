"""The limits of one key, the spend periods, and the refusal a limit gives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PERIODS = ("day", "month", "lifetime")


@dataclass(frozen=True, slots=True)
class KeyLimits:
    key_id: int
    spend_cap: int | None = None  # units per period
    spend_period: str = "month"
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def period_start(period: str, now: datetime) -> datetime | None:
    """Start of the current spend period (UTC); None for lifetime."""
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def period_id(period: str, now: datetime) -> str:
    """Names the current period: the counter of spend resets when this changes."""
    if period == "day":
        return now.strftime("d%Y%m%d")
    if period == "month":
        return now.strftime("m%Y%m")
    return "life"


class LimitReached(Exception):
    """A key limit refuses the request: 429 with `Retry-After` (`code` names the limit)."""

    def __init__(self, code: str, kind: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.code, self.kind, self.message, self.retry_after = code, kind, message, max(1, retry_after)


class LimitsUnavailable(Exception):
    """The shared limit store (Redis) did not answer: the request gets 503 with Retry-After."""
