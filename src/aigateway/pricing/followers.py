"""Models added in the operator console that follow a price source (catalog_models.price_source).

The fetcher (pricing.fetcher) prices them like the config's `price_source` models, with
the markup the console set for the model when there is one. Read at every fetch, so a
model starts or stops following a source without a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.providers.tables import catalog_models

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PriceFollower:
    """Quacks like a config model for the fetcher (name, type, price_source, price_source_model)."""

    name: str
    type: str
    price_source: str
    price_source_model: str | None = None
    markup: Decimal | None = None  # None: the source's, else [pricing] markup


async def price_followers(conn: AsyncConnection) -> list[PriceFollower]:
    """Every catalog_models row with a price source (the fetcher skips names the config defines)."""
    rows = (await conn.execute(select(catalog_models.c.name, catalog_models.c.type, catalog_models.c.price_source,
                                      catalog_models.c.price_source_model, catalog_models.c.markup)
                               .where(catalog_models.c.price_source.is_not(None))
                               .order_by(catalog_models.c.name))).all()
    out = []
    for row in rows:
        try:
            markup = None if row.markup is None else Decimal(row.markup)
        except InvalidOperation:
            # Hazard: one bad row must not stop the fetch of every other model, and the default
            # markup might undercharge: the model is left out (its last price stays), said so.
            log.warning("catalog_models row %s: markup %r is not a number; its price is not fetched",
                        row.name, row.markup)
            continue
        out.append(PriceFollower(row.name, row.type, row.price_source, row.price_source_model, markup))
    return out
