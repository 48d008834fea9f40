"""Discovery at 100,000 customers: chain API calls per pass do not depend on the number of addresses,
and a deposit to a cold address (Deposit tab never opened) is credited within the follow bound."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time

from sqlalchemy import insert, select

from aigateway.accounts.tables import customers
from aigateway.deposits.config import DepositsConfig
from aigateway.deposits.tables import deposit_addresses, deposit_transactions
from aigateway.deposits.tron import address_from_bytes
from aigateway.store.metadata import utcnow
from tests.deposits.conftest import deposits_section, make_env
from tests.support.waits import wait_until_async

CHAIN_PATHS = ("/v1/", "/walletsolidity/")
TRAFFIC = 100.0  # unrelated USDT transfers per second


async def _add_addresses(env, start: int, count: int) -> list[str]:
    """Customers with deposit addresses, in bulk (derivation is not what this test measures)."""
    now = utcnow()
    addresses = [address_from_bytes(i.to_bytes(4, "big") + os.urandom(16)) for i in range(start, start + count)]
    async with env.engine.begin() as conn:
        await conn.execute(insert(customers), [
            {"id": 1_000 + i, "email": f"s{i}@example.com", "status": "active", "balance": 0, "balance_version": 0,
             "created_at": now, "updated_at": now} for i in range(start, start + count)])
        await conn.execute(insert(deposit_addresses), [
            {"id": 1_000 + i, "customer_id": 1_000 + i, "derivation_index": 1_000 + i, "address": a,
             "xpub_fp": "test", "network": "mainnet", "created_at": now, "cursor_ms": 0, "last_polled_ms": 0,
             "watch_until_ms": 0} for i, a in zip(range(start, start + count), addresses, strict=True)])
    return addresses


class Traffic:
    """Steady USDT transfers between unrelated addresses (solid at once), from a thread."""

    def __init__(self, tron, per_second: float = 100.0) -> None:
        self.tron, self.gap = tron, 1 / per_second
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.gap):
            self.tron.transfer(address_from_bytes(os.urandom(20)), random.randint(1, 10**9), solid=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


def _chain_calls(tron) -> int:
    return sum(1 for r in tron.requests if r[1].startswith(CHAIN_PATHS))


async def _calls_per_pass(env, watcher, tron, passes: int) -> list[int]:
    counts = []
    for _ in range(passes):
        await asyncio.sleep(watcher.config.events_interval)
        before = _chain_calls(tron)
        await watcher.run_pass()
        counts.append(_chain_calls(tron) - before)
    return counts


async def _credit_latency(env, watcher, tron, address: str, cid: int, hot: bool) -> float:
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        passes = watcher.passes
        while watcher.passes < passes + 2:  # running: the address set is loaded
            await asyncio.sleep(0.02)
        tx = tron.transfer(address, 3_000_000, confirmed=False)
        if hot:  # the watched address: its transfer is seen while still unconfirmed
            async def seen():
                return await env.rows(select(deposit_transactions).where(deposit_transactions.c.tx_id == tx.tx_id))

            await wait_until_async(seen, timeout=5, what="the unconfirmed transfer seen")
        tron.solidify(tx)  # confirmed and solid: the moment the latency is measured from
        start = time.monotonic()
        while time.monotonic() - start < 10:
            if await env.scalar(select(customers.c.balance).where(customers.c.id == cid)):
                break
            await asyncio.sleep(0.02)
        return time.monotonic() - start
    finally:
        stop.set()
        await task


async def test_100k_addresses_cost_no_more_calls_and_cold_is_credited_in_bound(sqlite_url, tron):
    if os.environ.get("AIGW_DEPOSITS_DEFAULTS"):  # measure the README figures with the default intervals
        cfg = DepositsConfig.model_validate(deposits_section(
            tron.url, events_interval=3.0, all_interval=600, hot_interval=10, pending_interval=10, tick=1.0))
    else:
        cfg = DepositsConfig.model_validate(deposits_section(
            tron.url, events_interval=0.3, all_interval=3600, hot_interval=0.2, pending_interval=0.2, tick=0.05))
    env = await make_env(sqlite_url, cfg)
    try:
        with Traffic(tron, TRAFFIC):
            small = await _add_addresses(env, 0, 100)
            w = env.watcher()
            await w.run_pass()
            at_100 = await _calls_per_pass(env, w, tron, 5)
            await _add_addresses(env, 100, 99_900)
            await w.lease.release()  # the first process stops (else w2 stands by until its lease expires)
            w2 = env.watcher()  # a fresh process: loads the full set
            await w2.run_pass()
            at_100k = await _calls_per_pass(env, w2, tron, 5)
            assert len(w2._ours) == 100_000
            # events pages (traffic / 200 per follow) + 1 fallback listing; never one per address
            pages = -(-int(cfg.events_interval * TRAFFIC) // 200)
            assert at_100 == at_100k and set(at_100k) <= {pages + 1, pages + 2}, (at_100, at_100k)

            window_start, window_calls = time.monotonic(), _chain_calls(tron)
            cold = random.randint(50_000, 99_999)
            cold_latency = await _credit_latency(env, w2, tron,
                                                 (await env.rows(select(deposit_addresses.c.address)
                                                                 .where(deposit_addresses.c.id == 1_000 + cold)))[0][0],
                                                 1_000 + cold, hot=False)
            async with env.engine.begin() as conn:
                await conn.execute(deposit_addresses.update().where(deposit_addresses.c.id == 1_007)
                                   .values(watch_until_ms=int(time.time() * 1000) + 600_000))
            hot_latency = await _credit_latency(env, w2, tron, small[7], 1_007, hot=True)
        bound = cfg.events_interval + cfg.tick + 1.0  # one follow interval, one tick, slack for a busy machine
        minutes = (time.monotonic() - window_start) / 60
        print(f"\n100k addresses: calls/pass {at_100k}; credit latency cold {cold_latency:.2f}s "
              f"hot {hot_latency:.2f}s (bound {bound:.2f}s); chain calls/min while running "
              f"{(_chain_calls(tron) - window_calls) / minutes:.1f}")
        assert cold_latency <= bound and hot_latency <= bound, (cold_latency, hot_latency)
    finally:
        await env.close()
