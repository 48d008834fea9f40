"""Correctness gate for our gateway: one charge per successful request, at the right cost.

Money is integer micro-TMT units.  cost = ceil((in*in_price + out*out_price) / 1e6)
with prices in units per 1M tokens.  Tables (owned by the gateway):
  ledger_entries(customer_id, amount, kind, reference, created_at)   charge: amount < 0,
      kind 'charge', reference 'usage:<request id>'
  usage_records(id, customer_id, model, input_tokens, output_tokens, cost, status, created_at)
"""
from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal

UNITS = 1_000_000


def price_units(tmt_per_1m: str) -> int:
    return int(Decimal(tmt_per_1m) * UNITS)


def expected_cost(input_tokens: int, output_tokens: int, in_price: str, out_price: str) -> int:
    num = input_tokens * price_units(in_price) + output_tokens * price_units(out_price)
    return -(-num // UNITS)   # ceil, in integers


QUERIES = {
    "usage": "SELECT model, status, cost, COUNT(*) FROM usage_records GROUP BY model, status, cost",
    "charges": "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM ledger_entries WHERE kind = 'charge'",
    # charges that match no usage record, or whose amount is not minus its cost. The join looks the
    # record up by its id (`substr` of the reference), not by an expression of u.id: SQLite cannot use
    # an index for `l.reference = 'usage:' || u.id` from this side and scanned the whole table for each
    # charge (107 s for 30,000 rows, 0.03 s this way; the same count).
    "orphan_charges": (
        "SELECT COUNT(*) FROM ledger_entries l LEFT JOIN usage_records u "
        "ON substr(l.reference, 1, 6) = 'usage:' AND u.id = substr(l.reference, 7) "
        "WHERE l.kind = 'charge' AND (u.id IS NULL OR l.amount <> -u.cost)"),
    # billed usage records without exactly one charge
    "unbilled_usage": (
        "SELECT COUNT(*) FROM usage_records u WHERE u.cost > 0 AND "
        "(SELECT COUNT(*) FROM ledger_entries l WHERE l.reference = 'usage:' || u.id) <> 1"),
}


async def _pg_fetch(url: str) -> dict:
    import asyncpg
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return {k: [tuple(r) for r in await conn.fetch(q)] for k, q in QUERIES.items()}
    finally:
        await conn.close()


def _sqlite_fetch(url: str) -> dict:
    path = url.split(":///", 1)[1]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {k: conn.execute(q).fetchall() for k, q in QUERIES.items()}


def fetch(db_url: str) -> dict:
    if db_url.startswith("sqlite"):
        return _sqlite_fetch(db_url)
    return asyncio.run(_pg_fetch(db_url))


def check(db_url: str, expected: dict[str, int], ok: dict[str, int],
          unfinished: dict[str, int]) -> dict:
    """Compare the database with what the load generators saw.

    expected:   model -> expected cost per request (units)
    ok:         model -> successful responses counted by the load generators
    unfinished: model -> upper bound of requests left in flight (wrk stops with
                requests outstanding; the gateway may still complete and bill them)
    A model passes when ok <= billed rows <= ok + unfinished and every row costs
    the expected amount; the ledger must hold exactly one matching charge per row.
    """
    rows = fetch(db_url)
    problems: list[str] = []
    per_model: dict[str, dict] = {}
    for model, status, cost, n in rows["usage"]:
        m = per_model.setdefault(model, {"billed": 0, "cost_sum": 0, "failed_rows": 0})
        if 200 <= status < 300 or cost > 0:
            m["billed"] += n
            m["cost_sum"] += cost * n
            if model in expected and cost != expected[model]:
                problems.append(f"{model}: {n} row(s) cost {cost}, expected {expected[model]}")
        else:
            m["failed_rows"] += n
    for model in sorted(set(ok) | set(per_model)):
        m = per_model.setdefault(model, {"billed": 0, "cost_sum": 0, "failed_rows": 0})
        lo, hi = ok.get(model, 0), ok.get(model, 0) + unfinished.get(model, 0)
        m.update(ok=lo, max_expected=hi)
        if not lo <= m["billed"] <= hi:
            problems.append(f"{model}: {m['billed']} billed rows, load generator saw {lo} "
                            f"successes (+ up to {hi - lo} unfinished)")
    n_charges, charge_sum = rows["charges"][0]
    billed = sum(m["billed"] for m in per_model.values())
    cost_sum = sum(m["cost_sum"] for m in per_model.values())
    with_cost = sum(n for _m, _s, cost, n in rows["usage"] if cost > 0)
    if n_charges != with_cost:
        problems.append(f"{n_charges} charges for {with_cost} usage rows with a cost")
    if -charge_sum != cost_sum:
        problems.append(f"charges sum to {-charge_sum} units, usage costs to {cost_sum}")
    if rows["orphan_charges"][0][0]:
        problems.append(f"{rows['orphan_charges'][0][0]} charge(s) without a matching usage record")
    if rows["unbilled_usage"][0][0]:
        problems.append(f"{rows['unbilled_usage'][0][0]} usage record(s) without exactly one charge")
    return {"passed": not problems, "problems": problems, "models": per_model,
            "charges": n_charges, "charged_units": -charge_sum, "billed_rows": billed}
