"""Daily usage rollups equal the sums over usage_records: kept by the group commit (fast
path, duplicate retry, spool replay) and built by migration 0012 for older records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, inspect, select, text

from aigateway.accounts.service import create_customer
from aigateway.billing import rollups
from aigateway.billing.ledger import post_entry
from aigateway.billing.recorder import UsageEvent, UsageRecorder
from aigateway.billing.tables import usage_daily, usage_records
from aigateway.billing.wallet import LocalWallet
from aigateway.store.db import create_engine
from aigateway.store.migrate import alembic_config, upgrade

NOON = datetime(2026, 3, 15, 12, tzinfo=UTC)


def event(i: int, cid: int, model: str, when: datetime, cost: int) -> UsageEvent:
    return UsageEvent(id=f"req_roll{i}", customer_id=cid, api_key_id=None, model=model, endpoint="chat",
                      status=200, input_tokens=10 + i, output_tokens=i, cost=cost, created_at=when)


def events_for(a: int, b: int) -> list[UsageEvent]:
    # Two customers, two models, three UTC days (23:59:59 and 00:00:00 fall on different days), free ones.
    late = NOON.replace(hour=23, minute=59, second=59)
    return [
        event(1, a, "chat", NOON, 100), event(2, a, "chat", late, 50),
        event(3, a, "chat", late + timedelta(seconds=1), 7),
        event(4, a, "embed", NOON, 0), event(5, a, "embed", NOON - timedelta(days=1), 3),
        event(6, b, "chat", NOON, 1000),
    ]


async def snapshot(conn) -> list[tuple]:
    rows = (await conn.execute(select(usage_daily).order_by(
        usage_daily.c.customer_id, usage_daily.c.day, usage_daily.c.model))).all()
    # Compare instants, not how each database hands a timestamp back.
    return [(*r[:-1], r[-1] if r[-1] is None else _utc(r[-1])) for r in rows]


def _utc(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def setup(db_url):
    engine = create_engine(db_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        a = await create_customer(conn, "roll-a@example.com")
        b = await create_customer(conn, "roll-b@example.com")
        for cid in (a, b):
            await post_entry(conn, customer_id=cid, amount=1_000_000, kind="credit", reference=f"c{cid}")
    return engine, a, b


async def test_group_commit_keeps_rollups_equal_to_the_records(db_url):
    engine, a, b = await setup(db_url)
    recorder = UsageRecorder(engine, LocalWallet(engine), flush_max=4)  # two batches
    events = events_for(a, b)
    for e in events:
        recorder.record(e)
    await recorder.flush()
    # A retry after a commit that reported failure, and a replay of the spool: both find the
    # records already there (fast path fails on the duplicate, then the careful path runs).
    await recorder._write(events[:3])
    extra = event(7, a, "chat", NOON, 5)
    await recorder._write(events + [extra], replay=True)
    async with engine.begin() as conn:
        kept = await snapshot(conn)
        await rollups.rebuild(conn)
        rebuilt = await snapshot(conn)
    await engine.dispose()
    day, before = NOON.date(), NOON.date() - timedelta(days=1)
    late = NOON.replace(hour=23, minute=59, second=59)
    assert kept == rebuilt
    assert [(r[0], r[1], r[2]) for r in kept] == [(a, before, "embed"), (a, day, "chat"), (a, day, "embed"),
                                                 (a, day + timedelta(days=1), "chat"), (b, day, "chat")]
    chat = kept[1]  # requests 1, 2 and 7: tokens, cost, charges, last charged
    assert chat[3:] == (3, 11 + 12 + 17, 1 + 2 + 7, 100 + 50 + 5, 3, late)
    free = kept[2]  # one request that cost nothing: counted, not a charge
    assert free[3:] == (1, 14, 4, 0, 0, None)


async def test_migration_rolls_up_existing_records(db_url):
    engine, a, b = await setup(db_url)

    def downgrade(sync_conn):
        from alembic import command

        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, "rollups@base")

    async with engine.begin() as conn:
        await conn.run_sync(downgrade)
        assert "usage_daily" not in await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        await conn.execute(insert(usage_records), [
            {f: getattr(e, f) for f in ("id", "customer_id", "api_key_id", "model", "endpoint", "status",
                                        "input_tokens", "output_tokens", "cost", "created_at")}
            | {"estimated": False, "stream": False, "latency_ms": 1} for e in events_for(a, b)])
    await upgrade(engine)  # 0012 creates the table and rolls up what is there
    async with engine.begin() as conn:
        migrated = await snapshot(conn)
        await rollups.rebuild(conn)
        rebuilt = await snapshot(conn)
        total = await conn.scalar(text("SELECT sum(requests) FROM usage_daily"))
    await engine.dispose()
    assert migrated == rebuilt and total == 6 and len(migrated) == 5
    assert migrated[1][3:7] == (2, 11 + 12, 1 + 2, 150)
