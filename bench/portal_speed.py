"""Portal speed at a large history: dashboard and transactions server time for one customer
with N usage records (default 1,000,000, each with its ledger charge) spread over 90 days,
on SQLite and PostgreSQL; plus the CSV export's total time, and what the daily rollups add
to one group commit of 500 events.

Run:  .venv/bin/python bench/portal_speed.py [--records 1000000] [--db sqlite,postgres]
      [--pg postgresql://postgres@127.0.0.1:5432/postgres]   (a scratch database is created and dropped)

Server time is the portal's own Server-Timing header (request in, response out), the median
and best of 20 requests after 3 warm-up requests, through a real aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import select, text

from aigateway.accounts.service import create_customer
from aigateway.app import create_app
from aigateway.appkeys import ENGINE
from aigateway.billing import rollups
from aigateway.billing.ledger import post_entry
from aigateway.billing.recorder import _CHARGE_FIELDS, _FIELDS, UsageEvent, UsageRecorder
from aigateway.billing.tables import ledger_entries, usage_records
from aigateway.billing.wallet import LocalWallet
from aigateway.config import Config
from aigateway.portal.sessions import create_session
from aigateway.store.bulk import bulk_insert
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade

MODELS = ["llama-3.1-70b", "llama-3.1-8b", "qwen-2.5-72b", "mistral-large", "nomic-embed-text"]
DAYS = 90
CHUNK = 50_000


def config(url: str, spool: str) -> Config:
    return Config.model_validate({
        "database": {"url": url},
        "billing": {"spool_dir": spool},
        "providers": {"mock": {"base_url": "http://127.0.0.1:9/v1"}},
        "models": [{"name": m, "type": "chat", "input_price": "0.35", "output_price": "1.40",
                    "routes": [{"provider": "mock", "model": "x"}]} for m in MODELS],
        "discover_ollama": False,
    })


async def fill(engine, records: int) -> int:
    """One customer, `records` usage records and their ledger charges, written the way the
    group commit writes them (COPY / executemany); rollups built as migration 0012 does."""
    async with engine.begin() as conn:
        cid = await create_customer(conn, f"bench-{uuid.uuid4().hex[:8]}@example.com")
        await post_entry(conn, customer_id=cid, amount=10**12, kind="credit", reference=f"bench:{cid}")
    now = datetime.now(timezone.utc)
    step = timedelta(days=DAYS) / records
    started = time.perf_counter()
    for first in range(0, records, CHUNK):
        events = [UsageEvent(id=f"req_b{cid}_{i:08d}", customer_id=cid, api_key_id=None, model=MODELS[i % 5],
                             endpoint="chat", status=200, input_tokens=100 + i % 900, output_tokens=i % 400,
                             cost=500 + i % 5000, latency_ms=20, created_at=now - step * i)
                  for i in range(first, min(records, first + CHUNK))]
        async with engine.begin() as conn:
            await conn.execute(select(1))
            await bulk_insert(conn, usage_records, _FIELDS, [tuple(getattr(e, f) for f in _FIELDS) for e in events])
            await bulk_insert(conn, ledger_entries, _CHARGE_FIELDS,
                              [(cid, -e.cost, "charge", f"usage:{e.id}", e.model, e.created_at) for e in events])
        print(f"\r  {min(records, first + CHUNK):,} records", end="", file=sys.stderr, flush=True)
    async with engine.begin() as conn:
        t0 = time.perf_counter()
        await rollups.rebuild(conn, cid)
        rebuild = time.perf_counter() - t0
    if engine.dialect.name == "postgresql":  # as autovacuum would, before measuring rather than during
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
    print(f"\r  filled in {time.perf_counter() - started:.0f} s (rollups of the customer rebuilt in "
          f"{rebuild:.1f} s)", file=sys.stderr)
    return cid


async def query_times(engine, cid: int) -> None:
    """The pages' own queries alone (database + driver), median of 20."""
    from aigateway.portal.queries import transactions_page, usage_by_day

    for label, run in (("dashboard query (usage_by_day)", lambda c: usage_by_day(c, cid)),
                       ("transactions query (page 1)", lambda c: transactions_page(c, cid))):
        times = []
        async with engine.connect() as conn:
            for _ in range(20):
                t0 = time.perf_counter()
                await run(conn)
                times.append((time.perf_counter() - t0) * 1000)
        print(f"  {label:34} median {statistics.median(times):6.1f} ms, best {min(times):6.1f} ms")


async def commit_cost(engine) -> tuple[float, float]:
    """Median ms of one group commit of 500 events (5 models, 1 customer), without and with rollups."""
    async with engine.begin() as conn:
        cid = await create_customer(conn, f"commit-{uuid.uuid4().hex[:8]}@example.com")
        await post_entry(conn, customer_id=cid, amount=10**12, kind="credit", reference=f"commit:{cid}")
    recorder = UsageRecorder(engine, LocalWallet(engine), flush_max=500)
    real_add, results = rollups.add, []

    async def no_rollups(conn, rows):
        return None

    for label, add in (("without", no_rollups), ("with", real_add)):
        rollups.add = add
        times = []
        for n in range(30):
            batch = [UsageEvent(id=f"req_c{label}{n}_{i}", customer_id=cid, api_key_id=None, model=MODELS[i % 5],
                                endpoint="chat", status=200, input_tokens=100, output_tokens=50, cost=700)
                     for i in range(500)]
            t0 = time.perf_counter()
            await recorder._write(batch)
            times.append((time.perf_counter() - t0) * 1000)
        results.append(statistics.median(times))
    rollups.add = real_add
    return results[0], results[1]


async def measure(url: str, records: int) -> None:
    with tempfile.TemporaryDirectory() as spool:
        engine = create_engine(url)
        await upgrade(engine)
        cid = await fill(engine, records)
        await query_times(engine, cid)
        without, with_rollups = await commit_cost(engine)
        await engine.dispose()

        app = create_app(config(url, spool))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        token = await create_session(app[ENGINE], cid, timedelta(days=1))
        try:
            async with aiohttp.ClientSession(cookies={"gw_session": token}) as http:
                for path in ("/dashboard", "/transactions", "/transactions?page=3"):
                    times = []
                    for n in range(23):
                        async with http.get(f"http://127.0.0.1:{port}{path}", allow_redirects=False) as r:
                            assert r.status == 200, (path, r.status)
                            body = await r.text()
                            ms = float(re.fullmatch(r"app;dur=([\d.]+)", r.headers["Server-Timing"]).group(1))
                        if n >= 3:
                            times.append(ms)
                    if path == "/dashboard":
                        assert "API usage" in body or "Usage by day" in body
                    print(f"  {path:22} server time: median {statistics.median(times):6.1f} ms, "
                          f"best {min(times):6.1f} ms")
                t0 = time.perf_counter()
                size = 0
                async with http.get(f"http://127.0.0.1:{port}/transactions/export.csv") as r:
                    first_byte = time.perf_counter() - t0
                    async for chunk in r.content.iter_any():
                        size += len(chunk)
                total = time.perf_counter() - t0
                print(f"  CSV export: first bytes after {first_byte * 1000:.0f} ms, {size / 1e6:.0f} MB "
                      f"({records + 1:,} rows) in {total:.1f} s")
        finally:
            await runner.cleanup()
        print(f"  group commit of 500 events: {without:.1f} ms without rollups, {with_rollups:.1f} ms with "
              f"(median of 30)")


async def pg_scratch(admin_url: str, create: bool, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"CREATE DATABASE {name}" if create else f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    for db in args.db.split(","):
        print(f"{db}, {args.records:,} usage records for one customer over {DAYS} days:")
        if db == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                await measure(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", args.records)
        else:
            name = "aigw_bench_" + uuid.uuid4().hex[:8]
            await pg_scratch(args.pg, True, name)
            try:
                base = args.pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
                await measure(f"{base}/{name}", args.records)
            finally:
                await pg_scratch(args.pg, False, name)


if __name__ == "__main__":
    asyncio.run(main())
