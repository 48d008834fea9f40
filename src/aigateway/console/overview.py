"""The overview's numbers: 30 days per day, top customers and models, and what needs the operator.

Read-only aggregate queries over usage, ledger and deposits (indexed by created_at);
the "needs you" list comes from the concerns' own services (held prices, capped charges,
deposits waiting for review), the same ones the CLI prints.
"""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.accounts.tables import customers
from aigateway.billing.capped import capped_usage
from aigateway.billing.tables import ledger_entries, usage_records
from aigateway.store.metadata import utcnow

DAYS = 30


async def overview(conn: AsyncConnection) -> dict:
    since = (utcnow() - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    u = usage_records.c
    day = func.date(u.created_at)
    usage_rows = (await conn.execute(
        select(day.label("day"), func.count().label("requests"),
               func.sum(u.input_tokens + u.output_tokens).label("tokens"), func.sum(u.cost).label("revenue"),
               func.sum(case((u.status >= 400, 1), else_=0)).label("errors"))
        .where(u.created_at >= since).group_by(day))).all()
    ld = func.date(ledger_entries.c.created_at)
    deposit_rows = (await conn.execute(
        select(ld.label("day"), func.sum(ledger_entries.c.amount).label("deposits"))
        .where(ledger_entries.c.created_at >= since, ledger_entries.c.kind == "deposit").group_by(ld))).all()
    by_day: dict[str, dict] = {}
    for i in range(DAYS):
        d = (since + timedelta(days=i)).date().isoformat()
        by_day[d] = {"day": d, "requests": 0, "tokens": 0, "revenue": 0, "deposits": 0, "errors": 0}
    for r in usage_rows:
        entry = by_day.get(str(r.day)[:10])
        if entry is not None:
            entry.update(requests=int(r.requests), tokens=int(r.tokens or 0), revenue=int(r.revenue or 0),
                         errors=int(r.errors or 0))
    for r in deposit_rows:
        entry = by_day.get(str(r.day)[:10])
        if entry is not None:
            entry["deposits"] = int(r.deposits or 0)
    days = list(by_day.values())
    top_customers = (await conn.execute(
        select(customers.c.id, customers.c.email, func.sum(u.cost).label("revenue"), func.count().label("requests"))
        .join(customers, customers.c.id == u.customer_id).where(u.created_at >= since)
        .group_by(customers.c.id, customers.c.email).order_by(func.sum(u.cost).desc()).limit(10))).all()
    top_models = (await conn.execute(
        select(u.model, func.sum(u.cost).label("revenue"), func.count().label("requests"),
               func.avg(u.latency_ms).label("latency"))
        .where(u.created_at >= since).group_by(u.model).order_by(func.sum(u.cost).desc()).limit(10))).all()
    day_ago = utcnow() - timedelta(days=1)
    routes = (await conn.execute(
        select(u.provider, u.upstream_model, u.endpoint, func.count().label("requests"),
               func.sum(case((u.status >= 400, 1), else_=0)).label("errors"),
               func.avg(u.latency_ms).label("latency"), func.max(u.latency_ms).label("worst"))
        .where(u.created_at >= day_ago).group_by(u.provider, u.upstream_model, u.endpoint)
        .order_by(func.count().desc()).limit(30))).all()
    return {"days": days, "routes": routes, "top_customers": top_customers, "top_models": top_models,
            "totals": {k: sum(d[k] for d in days) for k in ("requests", "tokens", "revenue", "deposits", "errors")},
            "peak": {k: max([d[k] for d in days] + [1]) for k in ("requests", "revenue")},
            "needs": await needs_attention(conn, since)}


async def needs_attention(conn: AsyncConnection, since) -> dict:
    needs: dict = {"review": [], "held_prices": [], "held_limits": [], "capped": [], "failing_fetches": [],
                   "plain_seeds": 0}
    try:
        from aigateway.deposits.tables import deposit_transactions as t

        needs["review"] = (await conn.execute(select(t.c.tx_id, t.c.customer_id, t.c.note, t.c.seen_at)
                                              .where(t.c.status == "needs_review").order_by(t.c.id))).all()
    except ModuleNotFoundError:  # pragma: no cover - deposits not installed
        pass
    try:
        from aigateway.pricing.limits import held_limits
        from aigateway.pricing.service import pending_versions

        needs["held_prices"] = await pending_versions(conn)
        needs["held_limits"] = await held_limits(conn)
        from aigateway.pricing.tables import price_fetches as f

        latest = select(func.max(f.c.id)).where(f.c.finished_at.is_not(None)).group_by(f.c.source)
        needs["failing_fetches"] = (await conn.execute(select(f.c.source, f.c.error, f.c.finished_at)
                                                       .where(f.c.id.in_(latest), f.c.ok.is_(False)))).all()
    except ModuleNotFoundError:  # pragma: no cover
        pass
    needs["capped"] = await capped_usage(conn, since=since, limit=20)
    needs["plain_seeds"] = await plain_totp_seeds(conn)
    return needs


async def plain_totp_seeds(conn: AsyncConnection) -> int:
    """TOTP seeds stored unencrypted because AIGATEWAY_SECRET_KEY is not set (0 when it is: start-up seals them)."""
    from aigateway import crypto
    from aigateway.console.tables import operators
    from aigateway.portal.tables import portal_totp
    from aigateway.twofactor import seeds

    if crypto.can_store():
        return 0
    return await seeds.plain_count(conn, operators.c.totp_secret) + await seeds.plain_count(conn, portal_totp.c.secret)


def upstream_health(router) -> list[dict]:
    """Routes the router is resting now (after repeated failures), and routes with failures in a row.

    Reads the router's in-memory state of THIS replica (each replica keeps its own)."""
    now = time.monotonic()
    failures = getattr(router, "_failures", {})
    cooling = getattr(router, "_cool_until", {})
    out = []
    for key in sorted(set(failures) | set(cooling)):
        left = cooling.get(key, 0) - now
        if left > 0 or failures.get(key):
            out.append({"route": key, "failures": failures.get(key, 0), "resting": max(0, round(left))})
    return out
