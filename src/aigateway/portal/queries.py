"""Read models for the portal pages. Aggregation happens in the database.

`utc_day(column)` is one SQL expression that compiles per dialect to the
UTC calendar day of a timestamp as 'YYYY-MM-DD' text: `date(...)` on SQLite
(timestamps are stored as UTC text there) and `to_char(... AT TIME ZONE 'UTC')`
on PostgreSQL (independent of the session's time zone). Every query is
filtered by customer id first, so it runs on the (customer_id, created_at)
indexes and a customer can only ever see their own rows.

The dashboard and the transactions page read the daily rollups (`usage_daily`,
kept by the group commit: `billing.rollups`), so they cost the same at 1,000 or
1,000,000 usage records; only a day's drill-down reads usage records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import BigInteger, String, Text, and_, cast, func, literal, null, or_, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from aigateway.accounts.tables import api_keys
from aigateway.billing.tables import NONCHARGE, ledger_entries, usage_daily, usage_records
from aigateway.timeutil import as_utc, parse_utc
from aigateway.usage import UsageTotals


class utc_day(FunctionElement):  # noqa: N801 - reads like the SQL function it is
    type = String()
    name = "utc_day"
    inherit_cache = True


@compiles(utc_day)
def _utc_day_sqlite(element, compiler, **kw):
    # SQLAlchemy stores SQLite timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text, in UTC here;
    # its first ten characters are the day. (Same result as date(), without parsing every row.)
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(utc_day, "postgresql")
def _utc_day_pg(element, compiler, **kw):
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


class rollup_day(FunctionElement):  # noqa: N801
    """A rollup's `day` (a DATE) as 'YYYY-MM-DD' text on either database."""
    type = String()
    name = "rollup_day"
    inherit_cache = True


@compiles(rollup_day)
def _rollup_day_sqlite(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)  # stored as that text already


@compiles(rollup_day, "postgresql")
def _rollup_day_pg(element, compiler, **kw):
    return f"to_char({compiler.process(element.clauses, **kw)}, 'YYYY-MM-DD')"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# ---------------------------------------------------------------- usage by day

@dataclass(slots=True)
class DayUsage(UsageTotals):
    day: date = field(kw_only=True)
    by_model: dict[str, dict] = field(default_factory=dict)


@dataclass(slots=True)
class ModelUsage(UsageTotals):
    model: str = field(kw_only=True)


@dataclass(slots=True)
class UsageSummary:
    days: list[DayUsage]  # oldest first, one per calendar day (UTC), empty days included
    models: list[ModelUsage]  # most expensive first

    @property
    def empty(self) -> bool:
        return not any(d.requests for d in self.days)

    @property
    def total(self) -> ModelUsage:
        t = ModelUsage(model="all")
        for m in self.models:
            t.requests += m.requests
            t.input_tokens += m.input_tokens
            t.output_tokens += m.output_tokens
            t.cost += m.cost
        return t


async def usage_by_day(conn: AsyncConnection, customer_id: int, *, days: int = 30,
                       today: date | None = None) -> UsageSummary:
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    r = usage_daily.c  # the rollups: at most one row per day and model, whatever the history
    query = (
        select(r.day, r.model, cast(func.sum(r.requests), BigInteger).label("requests"),
               cast(func.sum(r.input_tokens), BigInteger).label("input_tokens"),
               cast(func.sum(r.output_tokens), BigInteger).label("output_tokens"),
               cast(func.sum(r.cost), BigInteger).label("cost"))
        .where(r.customer_id == customer_id, r.day >= first)
        .group_by(r.day, r.model)
    )
    rows = (await conn.execute(query)).all()
    by_day = {first + timedelta(days=i): DayUsage(day=first + timedelta(days=i)) for i in range(days)}
    models: dict[str, ModelUsage] = {}
    for row in rows:
        d = by_day.get(date.fromisoformat(str(row.day)))
        if d is None:  # a record stamped in the future (clock skew): leave it out of the window
            continue
        requests, inp, out, cost = int(row.requests), int(row.input_tokens), int(row.output_tokens), int(row.cost)
        d.requests += requests
        d.input_tokens += inp
        d.output_tokens += out
        d.cost += cost
        d.by_model[row.model] = {"requests": requests, "tokens": inp + out, "cost": cost}
        m = models.setdefault(row.model, ModelUsage(model=row.model))
        m.requests += requests
        m.input_tokens += inp
        m.output_tokens += out
        m.cost += cost
    ordered = sorted(models.values(), key=lambda m: (-m.cost, -m.tokens, m.model))
    return UsageSummary(days=list(by_day.values()), models=ordered)


# ---------------------------------------------------------------- transactions

@dataclass(frozen=True, slots=True)
class Transaction:
    at: datetime
    kind: str  # deposit | credit | adjustment | usage (charges of one day, grouped)
    amount: int
    memo: str | None
    reference: str | None  # the ledger reference; for usage: the day 'YYYY-MM-DD'
    count: int  # requests in a usage group; 1 otherwise


async def transactions_page(conn: AsyncConnection, customer_id: int, *, page: int = 1,
                            per_page: int = 25) -> tuple[list[Transaction], bool]:
    """Newest first: every non-charge entry on its own, charges grouped per UTC day.
    Returns (rows of the page, whether a next page exists)."""
    le = ledger_entries.c
    singles = select(
        le.created_at.label("at"), le.kind.label("kind"), le.amount.label("amount"),
        cast(le.memo, Text).label("memo"), cast(le.reference, Text).label("reference"),
        cast(literal(1), BigInteger).label("n"),
    ).where(le.customer_id == customer_id, text(NONCHARGE))  # literal: matches the partial index
    # Charges per day from the rollups (each charge is one usage record with a cost), not
    # from the ledger: a few hundred rows instead of every charge ever made.
    r = usage_daily.c
    grouped = select(
        func.max(r.last_charge_at).label("at"), cast(literal("usage"), String).label("kind"),
        cast(-func.sum(r.cost), BigInteger).label("amount"), cast(null(), Text).label("memo"),
        cast(rollup_day(r.day), Text).label("reference"), cast(func.sum(r.charges), BigInteger).label("n"),
    ).where(r.customer_id == customer_id, r.charges > 0).group_by(r.day)
    both = union_all(singles, grouped).subquery()
    query = (select(both).order_by(both.c.at.desc(), both.c.reference.desc())
             .limit(per_page + 1).offset((max(page, 1) - 1) * per_page))
    rows = (await conn.execute(query)).all()
    items = [Transaction(_as_datetime(r.at), r.kind, int(r.amount), r.memo, r.reference, int(r.n))
             for r in rows[:per_page]]
    return items, len(rows) > per_page


def _as_datetime(value) -> datetime:
    if isinstance(value, str):  # SQLite returns max() over a union as text
        return parse_utc(value)
    return as_utc(value)


@dataclass(frozen=True, slots=True)
class RequestRow:
    id: str
    at: datetime
    model: str
    endpoint: str
    key_name: str | None
    input_tokens: int
    output_tokens: int
    cost: int
    status: int
    stream: bool
    # The breakdown (parts of input/output tokens) and fees the cost was computed from.
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    request_fees: int = 0


async def requests_of_day(conn: AsyncConnection, customer_id: int, day: date, *, page: int = 1,
                          per_page: int = 50) -> tuple[list[RequestRow], bool, dict]:
    """The requests of one UTC day, newest first, with the day's totals."""
    u = usage_records.c
    window = and_(u.customer_id == customer_id, u.created_at >= day_start(day),
                  u.created_at < day_start(day + timedelta(days=1)))
    query = (
        select(u.id, u.created_at, u.model, u.endpoint, api_keys.c.name.label("key_name"), u.input_tokens,
               u.output_tokens, u.cost, u.status, u.stream,
               (u.cache_write_tokens + u.cache_write_long_tokens).label("cache_write_tokens"), u.cached_tokens,
               u.reasoning_tokens, u.images, u.request_fees)
        .select_from(usage_records.outerjoin(api_keys, api_keys.c.id == u.api_key_id))
        .where(window)
        .order_by(u.created_at.desc(), u.id.desc())
        .limit(per_page + 1).offset((max(page, 1) - 1) * per_page)
    )
    rows = (await conn.execute(query)).all()
    totals_row = (await conn.execute(select(
        func.count().label("requests"),
        cast(func.coalesce(func.sum(u.input_tokens + u.output_tokens), 0), BigInteger).label("tokens"),
        cast(func.coalesce(func.sum(u.cost), 0), BigInteger).label("cost"),
    ).where(window))).one()
    items = [RequestRow(r.id, _as_datetime(r.created_at), r.model, r.endpoint, r.key_name, r.input_tokens,
                        r.output_tokens, r.cost, r.status, bool(r.stream), r.cached_tokens, r.cache_write_tokens,
                        r.reasoning_tokens, r.images, r.request_fees) for r in rows[:per_page]]
    totals = {"requests": int(totals_row.requests), "tokens": int(totals_row.tokens), "cost": int(totals_row.cost)}
    return items, len(rows) > per_page, totals


async def ledger_batches(conn: AsyncConnection, customer_id: int, batch: int = 2000):
    """Every ledger entry of the customer, newest first, in batches (keyset pagination), for CSV export."""
    le = ledger_entries.c
    last: tuple | None = None
    while True:
        query = select(le.id, le.created_at, le.kind, le.amount, le.memo, le.reference).where(
            le.customer_id == customer_id)
        if last is not None:
            # The plain `<=` bound lets the (customer_id, created_at) index start at the last row;
            # with the OR alone, SQLite scanned the customer's entries from the top every batch.
            query = query.where(le.created_at <= last[0],
                                or_(le.created_at < last[0], and_(le.created_at == last[0], le.id < last[1])))
        rows = (await conn.execute(query.order_by(le.created_at.desc(), le.id.desc()).limit(batch))).all()
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        last = (rows[-1].created_at, rows[-1].id)
