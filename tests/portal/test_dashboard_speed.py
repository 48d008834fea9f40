"""The dashboard and transactions page stay fast for a heavy customer: 100,000 usage records.

They read the daily rollups (a few hundred rows), so the cost does not grow with the history;
the bound (200 ms server time, best of three) is far above the few milliseconds they take,
so a loaded machine does not fail it, while a page that aggregated the records again would
(seconds at this size). bench/portal_speed.py measures the figures at 1,000,000 records."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from aigateway.billing import rollups
from aigateway.billing.recorder import _FIELDS, UsageEvent
from aigateway.billing.tables import usage_records
from aigateway.store.bulk import bulk_insert

RECORDS = 100_000
MODELS = ["llama-3.1-70b", "llama-3.1-8b", "qwen-2.5-72b", "mistral-large", "nomic-embed-text"]


def server_ms(response) -> float:
    return float(re.fullmatch(r"app;dur=([\d.]+)", response.headers["Server-Timing"]).group(1))


def test_dashboard_and_transactions_with_100k_usage_records(visitor, gateway):
    v = visitor()
    cid = v.signup("heavy@example.com")
    now = datetime.now(UTC)
    step = timedelta(days=29) / RECORDS  # all inside the 30-day window

    async def fill():
        rows = [tuple(getattr(UsageEvent(
            id=f"req_heavy{i:07d}", customer_id=cid, api_key_id=None, model=MODELS[i % len(MODELS)],
            endpoint="chat", status=200, input_tokens=100 + i % 900, output_tokens=i % 400, cost=500 + i % 5000,
            latency_ms=20, created_at=now - step * i), f) for f in _FIELDS) for i in range(RECORDS)]
        async with gateway.engine.begin() as conn:
            await conn.execute(select(1))  # bulk_insert joins an open transaction
            await bulk_insert(conn, usage_records, _FIELDS, rows)
            await rollups.rebuild(conn, cid)  # as migration 0012 does for records written before it

    gateway.run(fill(), timeout=300)

    timings: dict[str, list[float]] = {"/dashboard": [], "/transactions": []}
    for path, seen in timings.items():
        for _ in range(3):
            r = v.get(path)
            assert r.status_code == 200
            seen.append(server_ms(r))
        if path == "/dashboard":
            assert f"{RECORDS:,}" in r.text  # every record counted
            assert all(m in r.text for m in MODELS)
        else:
            assert "API usage" in r.text and r.text.count('href="/transactions/20') >= 25  # a full page of days
    print(f"server time (ms): {timings}")
    assert all(min(seen) < 200 for seen in timings.values()), timings
