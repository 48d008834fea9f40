"""`aigateway admin reconcile` finds each kind of problem, and says "ok" when there is none."""

from __future__ import annotations

import asyncio
import uuid

from click.testing import CliRunner
from sqlalchemy import delete, update

from aigateway.accounts.service import create_customer
from aigateway.accounts.tables import customers
from aigateway.billing.ledger import post_entry
from aigateway.billing.reconcile import reconcile
from aigateway.billing.recorder import UsageEvent, UsageRecorder
from aigateway.billing.spool import Spool
from aigateway.billing.tables import ledger_entries, usage_records
from aigateway.billing.wallet import LocalWallet
from aigateway.cli import main
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade


def event(i: int, cid: int, cost: int = 1_000) -> UsageEvent:
    return UsageEvent(id=f"req_{i}", customer_id=cid, api_key_id=None, model="m", endpoint="chat",
                      status=200, cost=cost)


async def _billed(url: str) -> tuple:
    """Two customers with credits and three committed, charged requests."""
    engine = create_engine(url)
    await upgrade(engine)
    async with engine.begin() as conn:
        a = await create_customer(conn, "a@example.com")
        b = await create_customer(conn, "b@example.com")
        for cid in (a, b):
            await post_entry(conn, customer_id=cid, amount=1_000_000, kind="credit", reference=f"c{cid}")
    recorder = UsageRecorder(engine, LocalWallet(engine))
    for i, cid in enumerate((a, a, b)):
        recorder.record(event(i, cid))
    await recorder.flush()
    return engine, a, b


async def test_reconcile_finds_each_kind_of_problem(db_url, tmp_path):
    engine, a, b = await _billed(db_url)
    spool_dir = tmp_path / "spool"
    assert await reconcile(engine, spool_dir=spool_dir) == []

    async with engine.begin() as conn:
        await conn.execute(update(customers).where(customers.c.id == a).values(balance=customers.c.balance + 5))
    problems = await reconcile(engine)
    assert problems == [f"customer {a}: balance 998005 != ledger sum 998000 (units)"]

    async with engine.begin() as conn:  # undo, then lose a charge (and its balance move)
        await conn.execute(update(customers).where(customers.c.id == a).values(balance=customers.c.balance - 5))
        await conn.execute(delete(ledger_entries).where(ledger_entries.c.reference == "usage:req_2"))
        await conn.execute(update(customers).where(customers.c.id == b).values(balance=customers.c.balance + 1_000))
    problems = await reconcile(engine)
    assert problems == ["usage req_2: cost 1000 but no ledger charge usage:req_2"]

    async with engine.begin() as conn:  # a charge whose usage record is gone
        await conn.execute(delete(usage_records).where(usage_records.c.id == "req_1"))
    problems = await reconcile(engine)
    assert "ledger usage:req_1: charge -1000 without its usage record" in problems

    async with engine.begin() as conn:
        await post_entry(conn, customer_id=b, amount=-3_000_000, kind="adjustment", reference="neg",
                         allow_negative=True)
    problems = await reconcile(engine)
    assert f"customer {b}: negative balance -2000000 (units)" in problems

    leftover = Spool(spool_dir, UsageEvent, key=lambda e: e.id)
    leftover.open()
    leftover.append([event(7, a), event(8, a)])
    assert not any("spool" in p for p in await reconcile(engine, spool_dir=spool_dir))  # owned: being drained
    leftover.close()  # its process is gone, the events were never committed
    problems = await reconcile(engine, spool_dir=spool_dir)
    assert any(p.startswith(f"spool {spool_dir}: 2 usage events (2000 units") for p in problems)
    await engine.dispose()


async def test_reconcile_finds_a_redis_hold_older_than_its_ttl(sqlite_url, redis_url):
    import redis.asyncio as aioredis

    engine, a, _b = await _billed(sqlite_url)
    prefix = "test-reconcile-" + uuid.uuid4().hex[:8]
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    seconds, micros = await client.time()
    now_ms = seconds * 1000 + micros // 1000
    try:
        await client.zadd(f"{prefix}:h:{a}", {"r1:1:500": now_ms + 60_000})  # open, within its TTL
        assert await reconcile(engine, redis_url=redis_url, redis_prefix=prefix) == []
        await client.zadd(f"{prefix}:h:{a}", {"r1:2:700": now_ms - 5_000})  # should have expired 5 s ago
        problems = await reconcile(engine, redis_url=redis_url, redis_prefix=prefix)
        assert len(problems) == 1 and problems[0].startswith(f"redis: customer {a}: hold r1:2:700 expired")
    finally:
        await client.delete(f"{prefix}:h:{a}")
        await client.aclose()
        await engine.dispose()


def test_cli_prints_ok_and_exits_0_or_lists_problems_and_exits_1(tmp_path):
    db = tmp_path / "gw.db"
    config = tmp_path / "gw.toml"
    config.write_text(f'discover_ollama = false\n[database]\nurl = "sqlite+aiosqlite:///{db}"\n')
    engine, a, _b = asyncio.run(_billed(f"sqlite+aiosqlite:///{db}"))
    asyncio.run(engine.dispose())
    runner = CliRunner(env={"AIGATEWAY_DATABASE_URL": None, "AIGATEWAY_REDIS_URL": None})
    clean = runner.invoke(main, ["--config", str(config), "admin", "reconcile"])
    assert (clean.exit_code, clean.output) == (0, "ok\n")

    async def tamper():
        e = create_engine(f"sqlite+aiosqlite:///{db}")
        async with e.begin() as conn:
            await conn.execute(update(customers).where(customers.c.id == a).values(balance=-1))
        await e.dispose()

    asyncio.run(tamper())
    broken = runner.invoke(main, ["--config", str(config), "admin", "reconcile"])
    assert broken.exit_code == 1
    assert f"customer {a}: negative balance -1 (units)" in broken.output
    assert "ok" not in broken.output.split()
