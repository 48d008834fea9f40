"""Two watchers racing on PostgreSQL credit every deposit exactly once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from aigateway.accounts.tables import customers
from aigateway.billing.ledger import ledger_sum
from aigateway.billing.tables import ledger_entries
from aigateway.deposits.tables import deposit_addresses, deposit_transactions, deposits
from aigateway.deposits.watcher import PassStats, Watcher
from aigateway.store.db import create_engine
from tests.deposits.conftest import make_env
from tests.deposits.test_watcher import full_pass

pytestmark = pytest.mark.postgres


async def test_two_watchers_racing_on_postgres_credit_once(pg_url, dcfg, tron):
    env = await make_env(pg_url, dcfg)
    other_engine = create_engine(pg_url)
    try:
        expected: dict[int, int] = {}
        n_logs = 0
        for _ in range(3):
            cid, address = await env.customer()
            for i in range(4):
                tx = tron.transfer(address, (i + 1) * 1_000_000, solid=True)
                n_logs += 1
                if i == 3:  # a second Transfer log to us in the same transaction
                    tx.logs = [tx.transfer_log(), tx.transfer_log(value=500_000 * 3)]
                    n_logs += 1
                expected[cid] = expected.get(cid, 0) + sum(
                    int(log["data"], 16) for log in (tx.logs or [tx.transfer_log()])) * 7 // 2
        # Two watchers on two engines, both believing they are the active one.
        a = Watcher(env.engine, dcfg, use_lease=False)
        b = Watcher(other_engine, dcfg, use_lease=False)
        calls = {a: 0, b: 0}
        for w in (a, b):
            def counting(original, w=w):
                async def credit(*args):
                    calls[w] += 1
                    return await original(*args)
                return credit
            w._credit = counting(w._credit)
        for row in await env.rows(select(deposit_addresses)):
            await a.discover(row)
        # Head-on: both verify and credit the same pending transactions at the same moment.
        rows = await a._due_pending(10**15)
        assert len(rows) == 12
        stats = {a: PassStats(), b: PassStats()}
        await asyncio.gather(*[w.verify(r, stats[w]) for r in rows for w in (a, b)])
        assert calls == {a: 12, b: 12}
        # each reports only what it credited itself (no "15 credited" in both), and the loser of a
        # race does not overwrite the winner's note with "already credited"
        assert stats[a].credited + stats[b].credited == n_logs  # 12 transactions, 15 logs
        notes = [n for (n,) in await env.rows(select(deposit_transactions.c.note))]
        assert len(notes) == 12 and not any("already credited" in n for n in notes), notes
        # And whole passes racing, with a new transfer for each customer.
        for cid, address in await env.rows(select(deposit_addresses.c.customer_id, deposit_addresses.c.address)):
            tron.transfer(address, 2_000_000, solid=True)
            expected[cid] += 7_000_000
            n_logs += 1
        for _ in range(2):
            await asyncio.gather(full_pass(env, a), full_pass(env, b))
        assert await env.scalar(select(func.count()).select_from(deposits)) == n_logs
        assert await env.scalar(select(func.count()).select_from(ledger_entries)
                                .where(ledger_entries.c.kind == "deposit")) == n_logs
        for cid, amount in expected.items():
            bal = await env.scalar(select(customers.c.balance).where(customers.c.id == cid))
            async with env.engine.connect() as conn:
                assert bal == amount == await ledger_sum(conn, cid)
        await a.client.close()
        await b.client.close()

        # Addresses allocated at the same moment by two processes: distinct, indexes never shared.
        from aigateway.accounts.service import create_customer
        from aigateway.deposits.service import DepositsService

        async with env.engine.begin() as conn:
            ids = [await create_customer(conn, f"race{i}@example.com") for i in range(6)]
        other = DepositsService(dcfg, other_engine)
        got = await asyncio.gather(*[s.address_for(i) for i in ids for s in (env.service, other)])
        assert all(got[2 * k] == got[2 * k + 1] for k in range(len(ids)))
        assert len(set(got)) == len(ids)

        # With the lease, exactly one of two starting together becomes active.
        c, d = Watcher(env.engine, dcfg), Watcher(other_engine, dcfg)
        assert sorted(await asyncio.gather(c.tick(), d.tick())) == [False, True]
        await c.close()
        await d.close()
    finally:
        await other_engine.dispose()
        await env.close()
