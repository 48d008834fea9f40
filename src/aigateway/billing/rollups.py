"""Daily usage rollups: one `usage_daily` row per (customer, UTC day, model).

Invariant: for every (customer, day, model), the row's requests, tokens, cost and
charges equal the sums over `usage_records` of that day and model. The group
commit keeps it so by adding each batch's *newly inserted* records in the same
transaction as those records (one upsert per group per batch), so a retried or
replayed batch adds nothing twice. Migration 0012 builds the rows for records
written before it; `rebuild` does the same on demand (tests, benchmark, repair).

Why: the portal's dashboard and transactions page used to aggregate every usage
record of the window, which grows with the history (seconds at 1M records);
the rollups stay a few hundred rows per customer.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import delete, func, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from aigateway.billing.tables import usage_daily
from aigateway.timeutil import as_utc
from aigateway.usage import UsageTotals


class _Usage(Protocol):
    customer_id: int
    model: str
    input_tokens: int
    output_tokens: int
    cost: int
    created_at: datetime


@dataclass(slots=True)
class _Sum(UsageTotals):
    charges: int = 0
    last_charge_at: datetime | None = None


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of a timestamp (naive timestamps are UTC, as stored)."""
    return as_utc(moment).date()


def summarize(events: Iterable[_Usage]) -> list[dict[str, Any]]:
    """The batch's sums per (customer, day, model), as rows for `add`."""
    groups: dict[tuple[int, date, str], _Sum] = {}
    for e in events:
        key = (e.customer_id, utc_day(e.created_at), e.model)
        s = groups.get(key)
        if s is None:
            s = groups[key] = _Sum()
        s.requests += 1
        s.input_tokens += e.input_tokens or 0
        s.output_tokens += e.output_tokens or 0
        if e.cost:
            s.cost += e.cost
            s.charges += 1
            if s.last_charge_at is None or e.created_at > s.last_charge_at:
                s.last_charge_at = e.created_at
    return [{"customer_id": c, "day": d, "model": m, "requests": s.requests, "input_tokens": s.input_tokens,
             "output_tokens": s.output_tokens, "cost": s.cost, "charges": s.charges,
             "last_charge_at": s.last_charge_at}
            # Sorted: replicas upserting the same rows in one order cannot deadlock each other.
            for (c, d, m), s in sorted(groups.items(), key=lambda item: item[0])]


async def add(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Add the sums to the rollups: one INSERT ... ON CONFLICT DO UPDATE per row, in the
    caller's transaction (so they commit with the usage records they count)."""
    if not rows:
        return
    await conn.execute(_upsert(conn.dialect.name), rows)


@functools.cache
def _upsert(dialect: str) -> Insert:
    # Built once per dialect: building it (the `excluded` columns) cost more than running it.
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(usage_daily)
    t, new = usage_daily.c, stmt.excluded
    if dialect == "postgresql":
        latest = func.greatest(t.last_charge_at, new.last_charge_at)  # greatest() skips NULLs
    else:  # SQLite's max(a, b) is NULL when either is NULL
        latest = func.max(func.coalesce(t.last_charge_at, new.last_charge_at),
                          func.coalesce(new.last_charge_at, t.last_charge_at))
    return stmt.on_conflict_do_update(
        index_elements=[t.customer_id, t.day, t.model],
        set_={"requests": t.requests + new.requests, "input_tokens": t.input_tokens + new.input_tokens,
              "output_tokens": t.output_tokens + new.output_tokens, "cost": t.cost + new.cost,
              "charges": t.charges + new.charges, "last_charge_at": latest},
    )


# The rollups of every usage record, per dialect. Kept in step with the copy in migration
# 0012 (a migration must not change when this module does).
REBUILD_SQL = {
    "sqlite": """
        INSERT INTO usage_daily (customer_id, day, model, requests, input_tokens, output_tokens, cost,
                                 charges, last_charge_at)
        SELECT customer_id, substr(created_at, 1, 10), model, count(*), coalesce(sum(input_tokens), 0),
               coalesce(sum(output_tokens), 0), coalesce(sum(cost), 0),
               sum(CASE WHEN cost <> 0 THEN 1 ELSE 0 END), max(CASE WHEN cost <> 0 THEN created_at END)
        FROM usage_records {where} GROUP BY customer_id, substr(created_at, 1, 10), model
    """,
    "postgresql": """
        INSERT INTO usage_daily (customer_id, day, model, requests, input_tokens, output_tokens, cost,
                                 charges, last_charge_at)
        SELECT customer_id, (created_at AT TIME ZONE 'UTC')::date, model, count(*),
               coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cost), 0),
               count(*) FILTER (WHERE cost <> 0), max(created_at) FILTER (WHERE cost <> 0)
        FROM usage_records {where} GROUP BY 1, 2, 3
    """,
}


async def rebuild(conn: AsyncConnection, customer_id: int | None = None) -> None:
    """Recompute the rollups (of one customer, or all) from usage_records, in the caller's
    transaction. Run it where no group commit writes the same customer's records meanwhile."""
    if customer_id is None:
        await conn.execute(delete(usage_daily))
        where, params = "", {}
    else:
        await conn.execute(delete(usage_daily).where(usage_daily.c.customer_id == customer_id))
        where, params = "WHERE customer_id = :customer_id", {"customer_id": customer_id}
    await conn.execute(text(REBUILD_SQL[conn.dialect.name].format(where=where)), params)
