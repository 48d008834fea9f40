"""RedisWallet on a real Redis and a real PostgreSQL: holds, settles, snapshots, replicas, crashes."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aigateway.accounts.service import create_customer
from aigateway.billing.ledger import post_entry
from aigateway.billing.recorder import UsageEvent, UsageRecorder
from aigateway.billing.redis_wallet import RedisWallet
from aigateway.billing.wallet import InsufficientBalance, WalletUnavailable
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade
from tests.support.waits import wait_until_async


class Env:
    """One PostgreSQL database with a customer, and wallets (replicas) on one Redis prefix."""

    def __init__(self, pg_url: str, redis_url: str, prefix: str) -> None:
        self.pg_url, self.redis_url, self.prefix = pg_url, redis_url, prefix
        self.engine = create_engine(pg_url)
        self.wallets: list[RedisWallet] = []
        self.cid = 0
        self.redis = None

    async def start(self, credit: int = 1_000) -> Env:
        import redis.asyncio as aioredis

        await upgrade(self.engine)
        async with self.engine.begin() as conn:
            self.cid = await create_customer(conn, "wallet@example.com")
            if credit:
                await post_entry(conn, customer_id=self.cid, amount=credit, kind="credit", reference="c0")
        self.redis = aioredis.Redis.from_url(self.redis_url, decode_responses=True)
        return self

    def wallet(self, **kw) -> RedisWallet:
        wallet = RedisWallet(self.engine, self.redis_url, key_prefix=self.prefix, **kw)
        self.wallets.append(wallet)
        return wallet

    async def post(self, amount: int, reference: str, kind: str = "credit") -> None:
        """A balance change made by another tool (the CLI, a deposit) on its own connection."""
        other = create_engine(self.pg_url)
        try:
            async with other.begin() as conn:
                await post_entry(conn, customer_id=self.cid, amount=amount, kind=kind, reference=reference,
                                 allow_negative=True)
        finally:
            await other.dispose()

    async def state(self) -> dict:
        return await self.redis.hgetall(f"{self.prefix}:w:{self.cid}")

    async def close(self) -> None:
        for wallet in self.wallets:
            await wallet.close()
        await self.redis.aclose()
        await self.engine.dispose()


def pending(state: dict) -> dict[str, int]:
    """The pending field of each replica in a customer's hash: {replica: amount}."""
    return {k[2:]: int(v.split(":")[1]) for k, v in state.items() if k.startswith("p:")}


@pytest.fixture
async def env(pg_url, redis_url, prefix):
    e = await Env(pg_url, redis_url, prefix).start()
    yield e
    await e.close()


async def test_hold_settle_release_and_insufficient_balance(env):
    w = env.wallet()
    assert await w.available(env.cid) == 1_000  # loaded (seeded) from the database
    first = await w.hold(env.cid, 600)
    assert await w.available(env.cid) == 400
    with pytest.raises(InsufficientBalance) as refused:
        await w.hold(env.cid, 600)
    assert (refused.value.needed, refused.value.available) == (600, 400)
    await w.settle(first, 100)  # actual cost was lower: the rest of the hold is freed
    assert await w.available(env.cid) == 900
    await w.release(first)  # already settled: nothing moves
    await w.settle(first, 0)
    assert await w.available(env.cid) == 900
    second = await w.hold(env.cid, 900)
    assert await w.available(env.cid) == 0
    await w.release(second)
    await w.release(second)  # idempotent
    assert await w.available(env.cid) == 900
    state = await env.state()
    assert (state["bal"], state["ver"], state["held"]) == ("1000", "1", "0")
    assert pending(state) == {w.replica: 100}


async def test_refused_hold_reports_zero_when_pending_exceeds_balance(env):
    w = env.wallet()
    await w.settle(await w.hold(env.cid, 1_000), 1_000)
    with pytest.raises(InsufficientBalance) as refused:
        await w.hold(env.cid, 1)
    assert (refused.value.needed, refused.value.available) == (1, 0)


async def test_recorder_commit_moves_pending_into_the_balance(env):
    w = env.wallet()
    recorder = UsageRecorder(env.engine, w)
    hold = await w.hold(env.cid, 600)
    await w.settle(hold, 250)
    recorder.record(UsageEvent(id="req_1", customer_id=env.cid, api_key_id=None, model="m", endpoint="chat",
                               status=200, cost=250))
    assert await w.available(env.cid) == 750
    await recorder.flush()
    assert await w.available(env.cid) == 750
    state = await env.state()
    assert state["bal"] == "750" and state["ver"] == "2"
    assert pending(state) == {w.replica: 0}  # nothing pending any more


async def test_replicas_share_holds_and_pending_charges(env):
    a, b = env.wallet(), env.wallet()
    hold = await a.hold(env.cid, 600)
    assert await b.available(env.cid) == 400
    with pytest.raises(InsufficientBalance):
        await b.hold(env.cid, 600)
    await a.settle(hold, 100)
    assert await b.available(env.cid) == 900
    assert await b.hold(env.cid, 900)
    with pytest.raises(InsufficientBalance):
        await a.hold(env.cid, 1)


async def test_concurrent_holds_across_replicas_never_exceed_the_balance(env):
    replicas = [env.wallet() for _ in range(4)]

    async def try_hold(i: int):
        try:
            return await replicas[i % 4].hold(env.cid, 70)
        except InsufficientBalance:
            return None

    holds = await asyncio.gather(*(try_hold(i) for i in range(100)))
    assert sum(h is not None for h in holds) == 1_000 // 70
    assert await replicas[0].available(env.cid) == 1_000 - 70 * (1_000 // 70)


async def test_expired_holds_are_dropped(env):
    w = env.wallet(hold_ttl=1.0)
    await w.hold(env.cid, 1_000)  # a request that never settles (its replica died)
    with pytest.raises(InsufficientBalance):
        await w.hold(env.cid, 1)

    async def released() -> bool:  # once the hold's ttl has passed
        return await w.available(env.cid) == 1_000

    await wait_until_async(released, timeout=5, what="expired hold dropped")
    late = await w.hold(env.cid, 1_000)
    assert (await env.state())["held"] == "1000"
    await w.release(late)
    assert (await env.state())["held"] == "0"


async def test_snapshots_only_move_forward(env):
    w = env.wallet()
    assert await w.available(env.cid) == 1_000  # version 1
    await env.post(500, "c1")  # version 2
    await w.refresh()
    assert await w.available(env.cid) == 1_500
    # A replica that read the old row and writes it late changes nothing:
    await w._seed_snapshot(env.cid, 1_000, 1)
    await w.flushed(env.cid, 0, 1_000, 1)
    assert await w.available(env.cid) == 1_500
    assert (await env.state())["ver"] == "2"


async def test_refresh_brings_database_credits_to_every_replica(env):
    a, b = env.wallet(), env.wallet()
    assert await a.available(env.cid) == await b.available(env.cid) == 1_000
    await env.post(2_000, "deposit:1", kind="deposit")
    await a.refresh()
    assert await b.available(env.cid) == 3_000  # one refresh serves every replica
    await b.refresh()
    assert await a.available(env.cid) == 3_000


async def test_refresh_does_not_load_customers_nobody_asked_for(env):
    w = env.wallet()
    await w.refresh()
    await env.post(100, "c1")
    await w.refresh()
    assert await env.state() == {}


async def test_a_new_replica_catches_up_on_changes_made_while_none_ran(env):
    first = env.wallet()
    assert await first.available(env.cid) == 1_000
    await first.close()  # the last replica stops
    await env.post(-400, "adjust:1", kind="adjustment")  # an operator debits meanwhile
    await asyncio.sleep(2.2)  # longer than the refresh's own look-back slack
    late = env.wallet()  # no refresh has run yet, but its first hold must see the debit
    with pytest.raises(InsufficientBalance) as refused:
        await late.hold(env.cid, 700)
    assert refused.value.available == 600


async def test_crashed_replica_pending_counts_until_it_restarts_on_its_spool(env):
    crashed, alive = env.wallet(replica_ttl=0.4), env.wallet()
    await crashed.settle(await crashed.hold(env.cid, 300), 300)  # settled, never committed
    assert await alive.available(env.cid) == 700
    crashed._beat_task.cancel()  # the process dies: no heartbeat, no close, no flush
    await asyncio.sleep(0.6)
    # Long past its heartbeat: the charge waits in its usage spool, so it still counts.
    assert await alive.available(env.cid) == 700
    assert pending(await env.state()) == {crashed.replica: 300}
    # Started again on its spool (same replica id): the replay commits the charge, then
    # `restarted` clears the old field with the balance that now contains it.
    await env.post(-300, "usage:req_spooled", kind="charge")
    again = env.wallet(replica=crashed.replica)
    await again.restarted()
    assert pending(await env.state()) == {crashed.replica: 0}
    assert await alive.available(env.cid) == 700 == await again.available(env.cid)


async def test_a_restart_forgets_charges_that_never_reached_the_spool(env):
    crashed, alive = env.wallet(), env.wallet()
    await crashed.settle(await crashed.hold(env.cid, 300), 300)  # lost by kill -9 before the spool
    crashed._beat_task.cancel()
    assert await alive.available(env.cid) == 700  # conservative while it is down
    again = env.wallet(replica=crashed.replica)
    await again.restarted()  # its replay had nothing: the balance never contained the charge
    assert await alive.available(env.cid) == 1_000


async def test_crash_between_commit_and_flushed_is_conservative_until_the_restart(env):
    crashed, alive = env.wallet(), env.wallet()
    await crashed.settle(await crashed.hold(env.cid, 300), 300)
    await env.post(-300, "usage:req_x", kind="charge")  # its recorder committed the batch...
    crashed._beat_task.cancel()  # ...and the process died before `flushed`
    await alive.refresh()
    assert await alive.available(env.cid) == 400  # counted twice for a while: never an overdraft
    await env.redis.delete(f"{env.prefix}:r:{crashed.replica}")  # its heartbeat key expires
    assert await alive.available(env.cid) == 400  # still: it may have more charges in its spool
    await env.wallet(replica=crashed.replica).restarted()
    assert await alive.available(env.cid) == 700  # exact once it is back


async def test_flushed_of_a_batch_committed_by_an_earlier_attempt_reads_the_balance(env):
    w = env.wallet()
    recorder = UsageRecorder(env.engine, w)
    await w.settle(await w.hold(env.cid, 300), 300)
    batch = [UsageEvent(id="req_1", customer_id=env.cid, api_key_id=None, model="m", endpoint="chat",
                        status=200, cost=300)]
    # The first attempt committed but was reported as failed, so `flushed` never ran;
    # the retry finds the charge present and returns no balance (version -1).
    await env.post(-300, "usage:req_1", kind="charge")
    await recorder._write(batch)
    assert await w.available(env.cid) == 700  # not 1,000: the snapshot was reloaded


async def test_flushed_never_makes_pending_negative(env):
    w = env.wallet()
    assert await w.available(env.cid) == 1_000
    await w.flushed(env.cid, 500, 1_000, 1)  # charges whose pending field was lost
    assert await w.available(env.cid) == 1_000
    await w.settle(await w.hold(env.cid, 100), 100)
    await w.flushed(env.cid, 400, 1_000, 1)  # more than is pending: clamped, not negative
    assert await w.available(env.cid) == 1_000
    assert pending(await env.state()) == {w.replica: 0}


async def test_close_removes_the_heartbeat(env):
    w = env.wallet()
    await w.available(env.cid)
    alive = f"{env.prefix}:r:{w.replica}"
    assert await env.redis.exists(alive) == 1
    await w.close()
    assert await env.redis.exists(alive) == 0


class Flaky:
    """Wraps a wallet script: the next call fails, before or after reaching Redis."""

    def __init__(self, script, *, after: bool) -> None:
        self.script, self.after, self.armed = script, after, True

    async def __call__(self, *args, **kw):
        if self.armed:
            self.armed = False
            if self.after:
                await self.script(*args, **kw)
                raise RedisTimeoutError("timed out (but ran)")
            raise RedisConnectionError("connection reset")
        return await self.script(*args, **kw)


async def test_settle_during_a_redis_error_keeps_the_charge_and_is_repaired(env):
    w, other = env.wallet(), env.wallet()
    hold = await w.hold(env.cid, 600)
    w._sync_script = Flaky(w._sync_script, after=False)
    await w.settle(hold, 100)  # does not raise: the usage record must still be written
    assert await other.available(env.cid) == 400  # the hold still counts: conservative
    await w.refresh()  # the repair pass
    assert await other.available(env.cid) == 900
    assert pending(await env.state()) == {w.replica: 100}


async def test_a_write_that_timed_out_after_running_is_not_counted_twice(env):
    w = env.wallet()
    hold = await w.hold(env.cid, 600)
    w._sync_script = Flaky(w._sync_script, after=True)
    await w.settle(hold, 100)
    await w.refresh()  # writes the absolute amount again, not another +100
    assert await w.available(env.cid) == 900
    assert pending(await env.state()) == {w.replica: 100}


async def test_failed_release_is_retried(env):
    w = env.wallet()
    hold = await w.hold(env.cid, 600)
    w._release_script = Flaky(w._release_script, after=False)
    await w.release(hold)
    assert await w.available(env.cid) == 400
    await w.refresh()
    assert await w.available(env.cid) == 1_000


async def test_a_late_reordered_write_cannot_undo_a_newer_one(env):
    w = env.wallet()
    await w.settle(await w.hold(env.cid, 600), 100)
    # An older write (lower sequence number) arriving late is ignored.
    await w._sync_script(keys=w._keys(env.cid), args=["", f"p:{w.replica}", 0, 999, 0, -1, 10_000])
    assert pending(await env.state()) == {w.replica: 100}


async def test_a_stalled_replica_keeps_its_pending_charges_counted(env):
    stalled, other = env.wallet(replica_ttl=0.3), env.wallet()
    await stalled.settle(await stalled.hold(env.cid, 300), 300)  # settled, not yet committed
    stalled._beat_task.cancel()  # its event loop stalls past the heartbeat ttl
    await asyncio.sleep(0.45)
    assert await other.available(env.cid) == 700  # presumed dead, but its charge still counts
    await stalled._beat()  # it wakes up and notices
    await stalled.refresh()
    assert await other.available(env.cid) == 700


async def test_redis_losing_its_data_is_repaired_from_the_database_and_the_replicas(env):
    w, other = (env.wallet(replica_ttl=1.0, recovery_seconds=0.5) for _ in range(2))
    await w.settle(await w.hold(env.cid, 300), 300)
    await other.hold(env.cid, 200)
    keys = [k async for k in env.redis.scan_iter(match=env.prefix + ":*")]
    await env.redis.delete(*keys)  # a restart without persistence
    with pytest.raises(WalletUnavailable) as refused:  # not placed against the full balance
        await w.hold(env.cid, 1)
    assert 1 <= refused.value.retry_after <= 3
    await other._beat()  # the other replica notices on its heartbeat and re-registers
    with pytest.raises(WalletUnavailable):
        await other.hold(env.cid, 1)
    await until_recovered(w, env.cid)  # the window: three heartbeats of 0.25 s
    # The snapshot is reloaded from the database, w's pending charge and other's open hold are back.
    assert await other.available(env.cid) == 500
    with pytest.raises(InsufficientBalance):
        await w.hold(env.cid, 501)


async def until_recovered(wallet: RedisWallet, cid: int, timeout: float = 5.0) -> None:
    """Poll with a hold that cannot fit until the wallet answers with the balance again."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await wallet.hold(cid, 10**12)
        except WalletUnavailable:
            assert asyncio.get_running_loop().time() < deadline, "still recovering"
            await asyncio.sleep(0.05)
        except InsufficientBalance:
            return


async def test_a_replica_notices_lost_data_on_its_heartbeat(env):
    w = env.wallet(replica_ttl=1.0, recovery_seconds=0.2)
    hold = await w.hold(env.cid, 700)
    await env.redis.delete(*[k async for k in env.redis.scan_iter(match=env.prefix + ":*")])
    deadline = asyncio.get_running_loop().time() + 3
    while await env.redis.zcard(f"{env.prefix}:h:{env.cid}") == 0:  # the heartbeat loop, no request
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert await env.redis.exists(f"{env.prefix}:recovering") == 1
    await until_recovered(w, env.cid)
    assert await w.available(env.cid) == 300
    await w.release(hold)
    assert await w.available(env.cid) == 1_000


async def test_a_retried_hold_that_had_run_is_not_placed_twice(env):
    w = env.wallet()
    w._hold_script = Flaky(w._hold_script, after=True)  # ran, but the answer was lost
    with pytest.raises(RedisTimeoutError):
        await w._hold(env.cid, 600)
    w._ids = iter([next(w._ids) - 1])  # the client's retry sends the same member again
    hold = await w._hold(env.cid, 600)
    assert (await env.state())["held"] == "600"
    await w.release(hold)
    assert await w.available(env.cid) == 1_000


async def test_unreachable_redis_refuses_holds_with_wallet_unavailable(env):
    from aigateway.billing.redis_wallet import connect
    from tests.support.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    w = env.wallet(client=connect(url, connect_timeout=0.5))
    with pytest.raises(WalletUnavailable) as refused:
        await w.hold(env.cid, 1)
    assert refused.value.retry_after >= 1
    with pytest.raises(WalletUnavailable):
        await w.available(env.cid)


class CountingCheckouts:
    """Counts the wallet client's connection checkouts: one per round trip it makes."""

    def __init__(self, wallet: RedisWallet) -> None:
        self.count = 0
        pool = wallet._redis.connection_pool
        original = pool.get_connection

        async def counted(*args, **kw):
            self.count += 1
            return await original(*args, **kw)

        pool.get_connection = counted


async def test_the_holds_and_settles_of_one_loop_pass_share_one_round_trip(env):
    w = env.wallet()
    await w.hold(env.cid, 1)  # joined the replicas, snapshot loaded
    trips = CountingCheckouts(w)
    # 32 requests at once against a balance that fits 10 of them: the scripts still run one
    # by one in Redis, so exactly 10 holds pass, and each caller gets its own answer.
    outcomes = await asyncio.gather(*(w.hold(env.cid, 99) for _ in range(32)), return_exceptions=True)
    holds = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, InsufficientBalance)]
    assert (len(holds), len(refused)) == (10, 22)
    assert sorted(r.available for r in refused) == [9] * 22  # 1,000 - 1 - 10 x 99
    assert trips.count == 1
    await asyncio.gather(*(w.settle(h, 10) for h in holds))
    assert trips.count == 2
    assert await w.available(env.cid) == 1_000 - 1 - 100


async def test_an_error_in_one_call_of_a_batch_fails_only_that_call(env):
    w = env.wallet()
    async with env.engine.begin() as conn:
        other = await create_customer(conn, "broken@example.com")
        await post_entry(conn, customer_id=other, amount=1_000, kind="credit", reference="c-broken")
    await w.hold(env.cid, 1)
    await env.redis.set(f"{env.prefix}:h:{other}", "not a sorted set")  # that customer's script fails
    trips = CountingCheckouts(w)
    good, bad = await asyncio.gather(w.hold(env.cid, 100), w.hold(other, 100), return_exceptions=True)
    assert trips.count == 1  # one batch
    assert good.amount == 100 and isinstance(bad, WalletUnavailable)
    assert await w.available(env.cid) == 899


async def test_a_batch_after_redis_forgot_the_scripts_still_runs(env):
    w = env.wallet()
    await w.hold(env.cid, 1)
    await env.redis.script_flush()  # as after a restart: the next EVALSHA answers NOSCRIPT
    holds = await asyncio.gather(*(w.hold(env.cid, 100) for _ in range(5)))
    assert [h.amount for h in holds] == [100] * 5
    assert await w.available(env.cid) == 499


async def test_a_batch_to_an_unreachable_redis_refuses_every_hold(env):
    from aigateway.billing.redis_wallet import connect
    from tests.support.servers import free_port

    w = env.wallet(client=connect(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5))
    w._started = asyncio.get_running_loop().create_future()
    w._started.set_result(None)  # as if it had joined before Redis went away
    outcomes = await asyncio.gather(*(w.hold(env.cid, 1) for _ in range(8)), return_exceptions=True)
    assert all(isinstance(o, WalletUnavailable) for o in outcomes), outcomes
