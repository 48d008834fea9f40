"""The operator's exchange rates (TMT per 1 USD), with their history.

The rate is never a constant in code: the operator sets it with
`aigateway admin fx set USD 3.50` or in the config (`[pricing.fx] USD = "3.50"`).
A config value is recorded when it differs from the last value the config gave,
so editing the file takes effect at the next start, while a rate set from the
CLI stays in force across restarts until the config value itself changes.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import desc, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aigateway.money import parse_decimal
from aigateway.pricing.settings import PricingSettings
from aigateway.pricing.tables import fx_rates
from aigateway.store.metadata import utcnow


def normalize_rate(rate) -> Decimal:
    d = parse_decimal(rate, "rate", floats=True)
    if d <= 0:
        raise ValueError("a rate must be positive")
    return d


async def current_rate_row(conn: AsyncConnection, currency: str = "USD"):
    query = (select(fx_rates).where(fx_rates.c.currency == currency.upper())
             .order_by(desc(fx_rates.c.id)).limit(1))
    return (await conn.execute(query)).first()


async def current_rate(conn: AsyncConnection, currency: str = "USD") -> Decimal | None:
    row = await current_rate_row(conn, currency)
    return Decimal(row.rate) if row is not None else None


async def set_rate(conn: AsyncConnection, currency: str, rate, *, source: str = "manual",
                   note: str | None = None) -> bool:
    """Record a new rate unless it equals the one in force. Returns whether it changed."""
    value = normalize_rate(rate)
    current = await current_rate(conn, currency)
    if current is not None and current == value:
        return False
    await conn.execute(fx_rates.insert().values(currency=currency.upper(), rate=str(value), source=source,
                                                note=note, created_at=utcnow()))
    return True


async def rate_history(conn: AsyncConnection, currency: str = "USD", limit: int = 20) -> list:
    query = (select(fx_rates).where(fx_rates.c.currency == currency.upper())
             .order_by(desc(fx_rates.c.id)).limit(limit))
    return list((await conn.execute(query)).all())


async def apply_config_rates(engine: AsyncEngine, settings: PricingSettings) -> list[str]:
    changed = []
    async with engine.begin() as conn:
        for currency, rate in settings.fx.items():
            query = (select(fx_rates.c.rate).where(fx_rates.c.currency == currency, fx_rates.c.source == "config")
                     .order_by(desc(fx_rates.c.id)).limit(1))
            last_from_config = await conn.scalar(query)
            if last_from_config is not None and Decimal(last_from_config) == rate:
                continue  # unchanged in the file: a rate set from the CLI since then stays
            if await set_rate(conn, currency, rate, source="config"):
                changed.append(currency)
            else:  # already in force (set from the CLI): remember it as the config's value too
                await conn.execute(fx_rates.insert().values(currency=currency, rate=str(rate), source="config",
                                                            note="config value (already in force)",
                                                            created_at=utcnow()))
    return changed
