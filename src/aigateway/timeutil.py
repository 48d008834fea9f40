"""One home for time: aware UTC datetimes, epoch milliseconds, ISO 8601 text.

Hazard: SQLite hands `DateTime(timezone=True)` columns back naive (they were written in
UTC); formatted or compared as local time they would be off by the host's offset. Every
value read from the database goes through `as_utc` before it is shown or compared.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime: naive values are taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now_ms() -> int:
    """Wall-clock epoch milliseconds (what lease and schedule rows store)."""
    return time.time_ns() // 1_000_000


def to_ms(value: datetime | None) -> int:
    """Epoch milliseconds of a datetime (naive = UTC); 0 for None."""
    return 0 if value is None else int(as_utc(value).timestamp() * 1000)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with its UTC offset (`2026-05-01T12:00:00+00:00`), or None."""
    return None if value is None else as_utc(value).isoformat()


def parse_utc(text: str) -> datetime:
    """A date (`YYYY-MM-DD`) or ISO timestamp, UTC unless it names an offset; ValueError otherwise."""
    return as_utc(datetime.fromisoformat(text.strip()))
