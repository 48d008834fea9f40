"""Capped usage records: requests charged their hold because the upstream reported more.

A capped record is money the gateway did not recover (the upstream bills us
for what it reported; the customer paid the hold), or an upstream that ignores
the output cap it is sent. Either way the operator wants to see them: this is
the query behind `aigateway admin usage capped`. `reported_cost` is what the
upstream's counts would have cost at the record's price version, beside the
`cost` actually charged, so the gap is visible per record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.accounts.tables import customers
from aigateway.billing.tables import usage_records
from aigateway.catalog import EXTRA_FIELDS, Price
from aigateway.pricing.tables import price_versions
from aigateway.usage import Counts


@dataclass(frozen=True, slots=True)
class CappedRecord:
    id: str
    created_at: datetime
    customer_id: int
    email: str
    model: str
    provider: str | None
    input_tokens: int  # as the upstream reported them
    output_tokens: int
    cost: int  # units charged (= the hold)
    reported_cost: int | None  # units the reported counts would cost; None if the price version is gone


async def capped_usage(conn: AsyncConnection, *, since: datetime | None = None, customer_id: int | None = None,
                       limit: int = 1000) -> list[CappedRecord]:
    """Capped usage records, newest first."""
    u = usage_records.c
    query = (
        select(u.id, u.created_at, u.customer_id, customers.c.email, u.model, u.provider, u.input_tokens,
               u.output_tokens, u.cost, u.cached_tokens, u.cache_write_tokens, u.cache_write_long_tokens,
               u.reasoning_tokens, u.images, u.request_fees, price_versions.c.id.label("version_id"),
               price_versions.c.input_price, price_versions.c.output_price, price_versions.c.free,
               *(price_versions.c[name] for name in (*EXTRA_FIELDS, "tiers")))
        .select_from(usage_records.join(customers, customers.c.id == u.customer_id)
                     .outerjoin(price_versions, price_versions.c.id == u.price_version_id))
        .where(text("usage_records.capped"))  # the partial index's own predicate, so both databases use it
        .order_by(u.created_at.desc(), u.id.desc())
        .limit(limit)
    )
    if since is not None:
        query = query.where(u.created_at >= since)
    if customer_id is not None:
        query = query.where(u.customer_id == customer_id)
    out = []
    for row in (await conn.execute(query)).all():
        counts = Counts(row.input_tokens, row.output_tokens, row.cached_tokens, row.cache_write_tokens,
                        row.cache_write_long_tokens, row.reasoning_tokens, row.images, row.request_fees)
        reported = None if row.input_price is None else Price.from_row(row, row.version_id).cost(counts)
        out.append(CappedRecord(row.id, row.created_at, row.customer_id, row.email, row.model, row.provider,
                                row.input_tokens, row.output_tokens, row.cost, reported))
    return out
