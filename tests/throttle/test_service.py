"""The atomic throttle on its own, on SQLite and PostgreSQL: limits, forgiveness, forgetting, races."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade
from aigateway.throttle import service
from aigateway.throttle.service import Check, Policy
from aigateway.throttle.tables import throttle_counters

POLICY = Policy("test:one", free=3, base=60.0, cap=600.0, forget=3600.0)


def _run(db_url, body):
    async def main():
        engine = create_engine(db_url)
        await upgrade(engine)
        try:
            return await body(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_delays_double_up_to_the_cap():
    assert [POLICY.delay_after(n) for n in range(1, 9)] == [0, 0, 60, 120, 240, 480, 600, 600]


def test_free_attempts_then_refusal_forgiveness_and_forgetting(db_url):
    check = Check(POLICY, "alice", "customer 1")

    async def body(engine):
        verdicts = [await service.attempt(engine, [check]) for _ in range(4)]
        assert [v.allowed for v in verdicts] == [True, True, True, False]
        assert verdicts[2].wait == 60  # the third attempt, if it fails, imposes 60 s
        assert 58 <= verdicts[3].wait <= 60 and verdicts[3].refused_by == "test:one"
        assert [lock.label for lock in await service.locks(engine, [POLICY])] == ["customer 1"]
        # forgiving one success makes room for exactly one more attempt
        await service.forgive(engine, check)
        assert (await service.attempt(engine, [check])).allowed
        assert not (await service.attempt(engine, [check])).allowed
        # an hour without attempts ends the streak
        async with engine.begin() as conn:
            await conn.execute(update(throttle_counters).values(last_ms=throttle_counters.c.last_ms - 3_601_000))
        assert (await service.attempt(engine, [check])).allowed
        assert await service.locks(engine, [POLICY]) == []
        await service.forgive(engine, check, clear=True)
        assert [(await service.attempt(engine, [check])).allowed for _ in range(4)] == [True, True, True, False]

    _run(db_url, body)


def test_a_refusal_by_one_limit_counts_against_none(db_url):
    tight = Policy("test:tight", free=1, base=60.0, cap=60.0, forget=3600.0)
    loose = Check(POLICY, "shared-ip")

    async def body(engine):
        assert (await service.attempt(engine, [loose, Check(tight, "bob")])).allowed
        for _ in range(5):
            assert not (await service.attempt(engine, [loose, Check(tight, "bob")])).allowed
        # the refused attempts did not use up the shared limit
        assert (await service.attempt(engine, [loose])).allowed
        assert (await service.attempt(engine, [loose])).allowed
        assert not (await service.attempt(engine, [loose])).allowed

    _run(db_url, body)


def test_simultaneous_attempts_get_exactly_the_free_ones(db_url):
    check = Check(POLICY, "burst")

    async def body(engine):
        verdicts = await asyncio.gather(*[service.attempt(engine, [check]) for _ in range(40)])
        assert sum(v.allowed for v in verdicts) == POLICY.free

    _run(db_url, body)
