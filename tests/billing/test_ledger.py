"""The ledger on SQLite and PostgreSQL: idempotent, append-only, balance == sum of entries."""

import asyncio

import pytest

from aigateway.accounts.service import create_customer
from aigateway.billing.ledger import LedgerError, ledger_sum, post_entry
from aigateway.billing.recorder import UsageEvent, UsageRecorder
from aigateway.billing.wallet import InsufficientBalance, LocalWallet
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade


def run(coro):
    return asyncio.run(coro)


async def fresh(url):
    engine = create_engine(url)
    await upgrade(engine)
    async with engine.begin() as conn:
        cid = await create_customer(conn, "ledger@example.com")
    return engine, cid


def test_same_reference_moves_the_balance_once(db_url):
    async def scenario():
        engine, cid = await fresh(db_url)
        async with engine.begin() as conn:
            first = await post_entry(conn, customer_id=cid, amount=5_000_000, kind="deposit", reference="deposit:tx1:0")
        async with engine.begin() as conn:
            again = await post_entry(conn, customer_id=cid, amount=5_000_000, kind="deposit", reference="deposit:tx1:0")
        async with engine.connect() as conn:
            total = await ledger_sum(conn, cid)
        await engine.dispose()
        return first, again, total

    first, again, total = run(scenario())
    assert first.applied and not again.applied
    assert first.balance == again.balance == total == 5_000_000


def test_negative_adjustment_cannot_overdraw(db_url):
    async def scenario():
        engine, cid = await fresh(db_url)
        async with engine.begin() as conn:
            await post_entry(conn, customer_id=cid, amount=1_000_000, kind="credit", reference="c1")
        with pytest.raises(LedgerError):
            async with engine.begin() as conn:
                await post_entry(conn, customer_id=cid, amount=-2_000_000, kind="adjustment", reference="a1")
        async with engine.connect() as conn:
            total = await ledger_sum(conn, cid)
        await engine.dispose()
        return total

    assert run(scenario()) == 1_000_000  # the failed adjustment rolled back whole


def test_recorder_retry_of_a_committed_batch_does_not_charge_twice(db_url):
    async def scenario():
        engine, cid = await fresh(db_url)
        async with engine.begin() as conn:
            await post_entry(conn, customer_id=cid, amount=1_000_000, kind="credit", reference="c1")
        wallet = LocalWallet(engine)
        recorder = UsageRecorder(engine, wallet)
        batch = [UsageEvent(id=f"req_{i}", customer_id=cid, api_key_id=None, model="m", endpoint="chat",
                            status=200, cost=1_000) for i in range(3)]
        await recorder._write(batch)
        await recorder._write(batch)  # as after a failure reported late: same events again
        async with engine.connect() as conn:
            total = await ledger_sum(conn, cid)
        await engine.dispose()
        return total

    assert run(scenario()) == 1_000_000 - 3_000


def test_wallet_holds_refuse_what_balance_minus_open_holds_cannot_cover(sqlite_url):
    async def scenario():
        engine, cid = await fresh(sqlite_url)
        async with engine.begin() as conn:
            await post_entry(conn, customer_id=cid, amount=1_000, kind="credit", reference="c1")
        wallet = LocalWallet(engine)
        first = await wallet.hold(cid, 600)
        with pytest.raises(InsufficientBalance) as refused:
            await wallet.hold(cid, 600)
        assert (refused.value.needed, refused.value.available) == (600, 400)
        await wallet.settle(first, 100)  # actual cost was lower: the rest of the hold is freed
        second = await wallet.hold(cid, 900)
        await wallet.release(second)
        assert await wallet.available(cid) == 900
        await engine.dispose()

    run(scenario())


def test_expired_holds_are_released(sqlite_url):
    async def scenario():
        engine, cid = await fresh(sqlite_url)
        async with engine.begin() as conn:
            await post_entry(conn, customer_id=cid, amount=1_000, kind="credit", reference="c1")
        wallet = LocalWallet(engine, hold_ttl=0.05)
        await wallet.hold(cid, 1_000)  # a request that never settles (its worker died)
        await asyncio.sleep(0.1)
        await wallet.hold(cid, 1_000)
        await engine.dispose()

    run(scenario())


def test_concurrent_flushes_write_each_event_once(db_url):
    async def scenario():
        engine, cid = await fresh(db_url)
        async with engine.begin() as conn:
            await post_entry(conn, customer_id=cid, amount=1_000_000, kind="credit", reference="c1")
        wallet = LocalWallet(engine)
        recorder = UsageRecorder(engine, wallet, flush_max=7)
        for i in range(40):
            hold = await wallet.hold(cid, 100)
            await wallet.settle(hold, 100)
            recorder.record(UsageEvent(id=f"req_{i}", customer_id=cid, api_key_id=None, model="m",
                                       endpoint="chat", status=200, cost=100))
        await asyncio.gather(recorder.flush(), recorder.flush(), recorder.flush())
        async with engine.connect() as conn:
            total = await ledger_sum(conn, cid)
        available = await wallet.available(cid)
        await engine.dispose()
        return total, available

    total, available = run(scenario())
    assert total == 1_000_000 - 40 * 100
    assert available == total  # the wallet agrees with the database: nothing applied twice
