"""The one-statement group commit on PostgreSQL writes exactly what the general path writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from aigateway.accounts.service import create_customer, create_key
from aigateway.accounts.tables import api_keys, customers
from aigateway.billing.ledger import ledger_sum, post_entry
from aigateway.billing.recorder import UsageEvent, UsageRecorder
from aigateway.billing.tables import ledger_entries, usage_daily, usage_records
from aigateway.billing.wallet import LocalWallet
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade

NOON = datetime(2026, 3, 15, 12, tzinfo=UTC)


async def _customer(conn, email: str) -> tuple[int, int]:
    cid = await create_customer(conn, email)
    await post_entry(conn, customer_id=cid, amount=10_000_000, kind="credit", reference=f"credit-{email}")
    key_id, _ = await create_key(conn, cid, "k")
    return cid, key_id


def _events(tag: str, a: int, key_a: int, b: int, key_b: int, round_: int) -> list[UsageEvent]:
    late = NOON.replace(hour=23, minute=59, second=59) + timedelta(days=round_)
    return [
        UsageEvent(id=f"{tag}-{round_}-1", customer_id=a, api_key_id=key_a, model="chat", endpoint="chat",
                   status=200, provider="p", upstream_model="up", input_tokens=120, output_tokens=30,
                   cost=1_234, price_version_id=None, stream=True, latency_ms=17, created_at=NOON,
                   cached_tokens=20, reasoning_tokens=5),
        UsageEvent(id=f"{tag}-{round_}-2", customer_id=a, api_key_id=key_a, model="chat", endpoint="chat",
                   status=200, input_tokens=1, output_tokens=2, cost=3, estimated=True, capped=True,
                   created_at=late),
        UsageEvent(id=f"{tag}-{round_}-3", customer_id=a, api_key_id=None, model="embed", endpoint="embeddings",
                   status=502, error="upstream said no", cost=0, created_at=late + timedelta(seconds=1)),
        UsageEvent(id=f"{tag}-{round_}-4", customer_id=b, api_key_id=key_b, model="chat", endpoint="chat",
                   status=200, input_tokens=9, output_tokens=9, cost=99, images=1, request_fees=2,
                   cache_write_tokens=3, cache_write_long_tokens=4, created_at=NOON - timedelta(days=1)),
    ]


async def _state(engine, cids: list[int], key_ids: list[int]) -> dict:
    """Everything the commit wrote for these customers, without the ids that differ by design."""
    index = {cid: i for i, cid in enumerate(cids)}
    key_index = {k: i for i, k in enumerate(key_ids)} | {None: None}
    async with engine.connect() as conn:
        usage = (await conn.execute(select(usage_records).where(usage_records.c.customer_id.in_(cids))
                                    .order_by(usage_records.c.id))).mappings().all()
        ledger = (await conn.execute(select(ledger_entries).where(ledger_entries.c.customer_id.in_(cids),
                                                             ledger_entries.c.kind == "charge")
                                     .order_by(ledger_entries.c.reference))).mappings().all()
        daily = (await conn.execute(select(usage_daily).where(usage_daily.c.customer_id.in_(cids))
                                    .order_by(usage_daily.c.customer_id, usage_daily.c.day,
                                              usage_daily.c.model))).mappings().all()
        people = (await conn.execute(select(customers.c.id, customers.c.balance, customers.c.balance_version)
                                     .where(customers.c.id.in_(cids)).order_by(customers.c.id))).all()
        touched = (await conn.execute(select(customers.c.updated_at).where(customers.c.id.in_(cids))
                                      .order_by(customers.c.id))).scalars().all()
        keys = (await conn.execute(select(api_keys.c.customer_id, api_keys.c.last_used_at)
                                   .where(api_keys.c.customer_id.in_(cids)))).all()
        sums = [await ledger_sum(conn, cid) for cid in cids]

    def plain(row, drop=()):
        out = {k: v for k, v in row.items() if k not in drop}
        if "customer_id" in out:
            out["customer_id"] = index[out["customer_id"]]
        if "api_key_id" in out:
            out["api_key_id"] = key_index[out["api_key_id"]]
        for k in ("id", "reference"):
            if k in out and isinstance(out[k], str):
                out[k] = out[k].split("-", 1)[1]  # drop the tag
        return out

    return {
        "usage": [plain(r) for r in usage],
        "ledger": [plain(r, drop=("id",)) | {"reference": r["reference"].split("-", 1)[1]} for r in ledger],
        "daily": [plain(r) for r in daily],
        "balances": sorted((index[c], bal, ver) for c, bal, ver in people),
        "keys_used": sorted((index[c], used) for c, used in keys),
        "ledger_sums": sums,
        "updated_at": touched,
    }


async def test_one_statement_writes_what_the_general_path_writes(pg_url):
    engine = create_engine(pg_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        a1, ka1 = await _customer(conn, "one-a@example.com")
        b1, kb1 = await _customer(conn, "one-b@example.com")
        a2, ka2 = await _customer(conn, "general-a@example.com")
        b2, kb2 = await _customer(conn, "general-b@example.com")
    one = UsageRecorder(engine, LocalWallet(engine))
    general = UsageRecorder(engine, LocalWallet(engine), one_statement=False)
    assert one._one_statement and not general._one_statement
    before = await _state(engine, [a1, b1], [ka1, kb1])
    for round_ in range(2):  # the second round adds to rollup rows the first made
        await one._write(_events("one", a1, ka1, b1, kb1, round_))
        await general._write(_events("general", a2, ka2, b2, kb2, round_))
    got = await _state(engine, [a1, b1], [ka1, kb1])
    want = await _state(engine, [a2, b2], [ka2, kb2])
    await engine.dispose()
    assert len(got["usage"]) == 8 and len(got["ledger"]) == 6 and len(got["daily"]) >= 4
    assert got["balances"][0][1] == 10_000_000 - 2 * (1_234 + 3)
    assert got["keys_used"][0][1] == NOON.replace(hour=23, minute=59, second=59) + timedelta(days=1)
    for part in want:
        if part != "updated_at":
            assert got[part] == want[part], part
    # Replicas learn of balance changes by `updated_at`: it moves as the general path moves it.
    assert all(after > then for after, then in zip(got["updated_at"], before["updated_at"], strict=True))


async def test_a_batch_with_a_committed_event_falls_back_and_charges_each_once(pg_url):
    engine = create_engine(pg_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        a, ka = await _customer(conn, "dup-a@example.com")
        b, kb = await _customer(conn, "dup-b@example.com")
    wallet = LocalWallet(engine)
    recorder = UsageRecorder(engine, wallet)
    events = _events("dup", a, ka, b, kb, 0)
    await recorder._write(events[:2])
    await recorder._write(events)  # the first two again (a failure reported late), the rest new
    async with engine.connect() as conn:
        sums = [await ledger_sum(conn, a), await ledger_sum(conn, b)]
        rows = len((await conn.execute(select(usage_records.c.id).where(usage_records.c.customer_id == a))).all())
    await engine.dispose()
    assert sums == [10_000_000 - 1_234 - 3, 10_000_000 - 99]
    assert rows == 3


async def test_a_missing_customer_fails_the_batch_and_writes_nothing(pg_url):
    engine = create_engine(pg_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        a, ka = await _customer(conn, "gone-a@example.com")
    recorder = UsageRecorder(engine, LocalWallet(engine))
    events = _events("gone", a, ka, 999_999, ka, 0)  # the last event names no customer
    with pytest.raises(Exception):  # noqa: B017 - the driver's foreign-key error; the batch is retried
        await recorder._write(events)
    async with engine.connect() as conn:
        total = await ledger_sum(conn, a)
        rows = (await conn.execute(select(usage_records.c.id).where(usage_records.c.customer_id == a))).all()
    await engine.dispose()
    assert total == 10_000_000 and rows == []  # all or nothing
