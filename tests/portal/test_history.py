"""Usage by day and the transaction history: SQL aggregation on SQLite and PostgreSQL,
the pages, the drill-down, pagination and the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import openai
import pytest
from sqlalchemy import insert

from aigateway.accounts.service import create_customer
from aigateway.billing import rollups
from aigateway.billing.ledger import post_entry
from aigateway.billing.tables import ledger_entries, usage_records
from aigateway.money import format_tmt, to_units
from aigateway.portal.queries import requests_of_day, transactions_page, usage_by_day
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade
from tests.portal.conftest import wait_usage

TODAY = date(2026, 3, 15)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def usage_row(rid: str, cid: int, model: str, when: datetime, inp: int, out: int, cost: int) -> dict:
    return dict(id=rid, customer_id=cid, api_key_id=None, model=model, endpoint="chat", input_tokens=inp,
                output_tokens=out, cost=cost, status=200, created_at=when, estimated=False, stream=False,
                latency_ms=5)


async def test_aggregation_by_utc_day_on_both_databases(db_url):
    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            cid = await create_customer(conn, "agg@example.com")
            other = await create_customer(conn, "other@example.com")
            yesterday = TODAY - timedelta(days=1)
            rows = [
                usage_row("r1", cid, "chat-a", at(TODAY, 0, 1), 10, 20, 100),
                usage_row("r2", cid, "chat-a", at(TODAY, 23, 59), 1, 2, 3),
                usage_row("r3", cid, "embed-b", at(TODAY, 12), 50, 0, 7),
                usage_row("r4", cid, "chat-a", at(yesterday, 23, 59), 5, 5, 40),
                usage_row("r5", cid, "chat-a", at(TODAY - timedelta(days=30), 12), 9, 9, 9),  # outside 30 days
                usage_row("r6", other, "chat-a", at(TODAY, 12), 1000, 1000, 1000),  # someone else's
            ]
            await conn.execute(insert(usage_records), rows)
            await conn.execute(insert(ledger_entries), [
                {"customer_id": cid, "amount": -r["cost"], "kind": "charge", "reference": f"usage:{r['id']}",
                 "memo": r["model"], "created_at": r["created_at"]} for r in rows if r["customer_id"] == cid
            ] + [
                {"customer_id": cid, "amount": 5_000_000, "kind": "deposit", "reference": "dep:1", "memo": None,
                 "created_at": at(yesterday, 8)},
                {"customer_id": cid, "amount": -250_000, "kind": "adjustment", "reference": "adj:1",
                 "memo": "refund fix", "created_at": at(TODAY, 9)},
                {"customer_id": other, "amount": 1, "kind": "credit", "reference": "other:1", "memo": None,
                 "created_at": at(TODAY, 9)},
            ])
            await rollups.rebuild(conn)  # records written directly: roll them up as the migration does

        async with engine.connect() as conn:
            summary = await usage_by_day(conn, cid, today=TODAY)
            assert len(summary.days) == 30 and summary.days[-1].day == TODAY
            today_row, yesterday_row = summary.days[-1], summary.days[-2]
            assert (today_row.requests, today_row.input_tokens, today_row.output_tokens, today_row.cost) == \
                (3, 61, 22, 110)
            assert today_row.by_model == {"chat-a": {"requests": 2, "tokens": 33, "cost": 103},
                                          "embed-b": {"requests": 1, "tokens": 50, "cost": 7}}
            assert (yesterday_row.requests, yesterday_row.cost) == (1, 40)
            assert sum(d.requests for d in summary.days) == 4  # r5 is older than 30 days, r6 is not ours
            assert [(m.model, m.requests, m.cost) for m in summary.models] == [("chat-a", 3, 143), ("embed-b", 1, 7)]

            items, has_next = await transactions_page(conn, cid)
            assert not has_next
            assert [(t.kind, t.amount, t.count, t.reference) for t in items] == [
                ("usage", -110, 3, TODAY.isoformat()),
                ("adjustment", -250_000, 1, "adj:1"),
                ("usage", -40, 1, yesterday.isoformat()),
                ("deposit", 5_000_000, 1, "dep:1"),
                ("usage", -9, 1, (TODAY - timedelta(days=30)).isoformat()),
            ]
            assert items[0].at == at(TODAY, 23, 59) and items[0].at.tzinfo is not None
            first, more = await transactions_page(conn, cid, per_page=2)
            second, _ = await transactions_page(conn, cid, page=2, per_page=2)
            assert more and [t.reference for t in first + second] == [t.reference for t in items[:4]]

            reqs, more, totals = await requests_of_day(conn, cid, TODAY)
            assert [r.id for r in reqs] == ["r2", "r3", "r1"] and not more
            assert totals == {"requests": 3, "tokens": 83, "cost": 110}
            reqs, _, totals = await requests_of_day(conn, other, TODAY)
            assert [r.id for r in reqs] == ["r6"]
    finally:
        await engine.dispose()


def test_transaction_pages_and_csv_export(visitor, gateway):
    v = visitor()
    cid = v.signup("ledger@example.com")
    gateway.credit(cid, "12.5", "test:topup")

    async def adjust():
        async with gateway.engine.begin() as conn:
            await post_entry(conn, customer_id=cid, amount=-to_units("0.25"), kind="adjustment",
                             reference="test:adj", memo='=HYPERLINK("http://evil.example","click")')

    gateway.run(adjust())
    _, secret = v.create_key("csv")
    client = openai.OpenAI(api_key=secret, base_url=gateway.base_url, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "Hello!"}])
    client.embeddings.create(model="nomic-embed-text", input="Text to embed")
    usage = {r.id: r for r in wait_usage(gateway, cid, 3)}
    entries = "SELECT count(*) FROM ledger_entries WHERE customer_id = :c"
    gateway.wait_for(lambda: gateway.sql(entries, c=cid)[0][0] == 5)

    page = v.get("/transactions").text
    assert "API usage" in page and "3 requests" in page and "+12.50" in page and "-0.25" in page
    assert "=HYPERLINK(&#34;http://evil.example&#34;,&#34;click&#34;)" in page  # escaped as text

    r = v.get("/transactions/export.csv")
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="transactions-')
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 5
    stamps = [row["date_utc"] for row in rows]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    charges = [row for row in rows if row["type"] == "charge"]
    assert {row["reference"] for row in charges} == {f"usage:{rid}" for rid in usage}
    for row in charges:
        u = usage[row["reference"].removeprefix("usage:")]
        assert row["amount_tmt"] == format_tmt(-u.cost) and row["description"] == u.model
    credit = next(row for row in rows if row["type"] == "credit")
    assert credit["amount_tmt"] == "12.500000" and credit["reference"] == "test:topup"
    adjustment = next(row for row in rows if row["type"] == "adjustment")
    assert adjustment["amount_tmt"] == "-0.250000"
    assert adjustment["description"] == "'=HYPERLINK(\"http://evil.example\",\"click\")"  # no formula
    total = sum(to_units(row["amount_tmt"]) for row in rows)
    assert total == gateway.sql("SELECT balance FROM customers WHERE id = :c", c=cid)[0][0]

    # drill-down of today's charges
    today = datetime.now(UTC).date().isoformat()
    day = v.get(f"/transactions/{today}").text
    assert day.count("<tr>") == 1 + 3 and "nomic-embed-text" in day and "csv" in day
    assert v.get("/transactions/2026-02-30").status_code == 404
    assert v.get("/transactions/not-a-day").status_code == 404


def test_transaction_history_is_paginated(visitor, gateway):
    v = visitor()
    cid = v.signup("pages@example.com")

    async def credits():
        async with gateway.engine.begin() as conn:
            for i in range(30):
                await post_entry(conn, customer_id=cid, amount=1_000_000 + i, kind="credit",
                                 reference=f"test:page:{i}")

    gateway.run(credits())
    first = v.get("/transactions").text
    assert first.count("badge-credit") == 25 and 'rel="next"' in first and 'rel="prev"' not in first
    second = v.get("/transactions?page=2").text
    assert second.count("badge-credit") == 5 and 'rel="prev"' in second and 'rel="next"' not in second
    assert "+1.000029" in first and "+1.00" in second  # newest (the last posted) first
    assert v.get("/transactions?page=abc").status_code == 200


@pytest.mark.parametrize("metric", ["cost", "tokens", "requests", "bogus"])
def test_dashboard_chart_metrics(visitor, gateway, metric):
    v = visitor()
    cid = v.signup(f"chart-{metric}@example.com")

    async def usage():
        async with gateway.engine.begin() as conn:
            now = datetime.now(UTC)
            await conn.execute(insert(usage_records), [
                usage_row(f"c{metric}{i}", cid, f"model-{i % 8}", now - timedelta(days=i % 30), 100 * i, 10 * i,
                          1000 * i) for i in range(1, 60)])
            await rollups.rebuild(conn, cid)

    gateway.run(usage())
    page = v.get(f"/dashboard?metric={metric}").text
    assert page.count('class="chart chart-') == 2
    label = {"cost": "Cost (TMT)", "tokens": "Tokens", "requests": "Requests"}.get(metric, "Cost (TMT)")
    assert f'aria-current="true">{label}</a>' in page
    assert "Other models" in page  # 8 models: the smallest share a colour
    assert "No usage in the last 30 days." not in page
