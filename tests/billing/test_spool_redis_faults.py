"""A replica that dies with spooled charges, while another replica keeps serving its customer.

Replicas share balances through Redis; a replica's settled, uncommitted charges are its
pending field there. When it dies they wait in its usage spool, so they must keep counting
on every other replica until it is started again on that spool (which commits them and
clears the field). Otherwise another replica would let the customer spend that money again
and the replay would take the balance below zero.

Real processes: a private PostgreSQL cluster that the test stops, `aigateway serve` twice
(replica A, killed with -9 during the outage, and replica B), the shared Redis under a
private key prefix.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

from aiohttp import ClientSession

from tests.billing.test_spool_faults import (  # noqa: F401 - fixtures
    COST,
    Gateway,
    Load,
    _billing,
    _setup,
    fake_upstream,
    private_pg,
    wait_spooled,
)

REPLICA_TTL = 1.0


def _replica(workdir, db_url: str, upstream_url: str, redis_url: str, prefix: str) -> Gateway:
    workdir.mkdir()
    gw = Gateway(workdir, db_url, upstream_url)
    gw.config.write_text(gw.config.read_text() + f"""
[redis]
url = "{redis_url}"
key_prefix = "{prefix}"
replica_ttl = {REPLICA_TTL}
""")
    return gw


async def _spend_until_refused(port: int, key: str, limit: int = 1000) -> dict[int, int]:
    body = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
    statuses: dict[int, int] = {}
    async with ClientSession() as session:
        for _ in range(limit):
            async with session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {key}"}) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 402:
                    return statuses
    raise AssertionError(f"never refused: {statuses}")


def test_a_dead_replicas_spooled_charges_cannot_be_spent_on_another_replica(
        private_pg, fake_upstream, tmp_path, redis_url):  # noqa: F811 (fixtures imported above, injected by name)
    db_url = private_pg.fresh_database()
    credit_units = 300 * COST  # room for A's answers before and during the outage, whatever the speed
    cid, key = asyncio.run(_setup(db_url, str(credit_units / 1_000_000)))
    prefix = f"aigw-test-{uuid.uuid4().hex[:8]}"
    a = _replica(tmp_path / "a", db_url, fake_upstream.url, redis_url, prefix)
    b = _replica(tmp_path / "b", db_url, fake_upstream.url, redis_url, prefix)
    a.start()
    try:
        with Load(f"http://127.0.0.1:{a.port}", key, concurrency=4) as load:
            load.wait_for(15)
            private_pg.stop_immediate()
            load.wait_for(len(load.done) + 25)  # charged in Redis and the spool, not in the database
        ids = {i for i, _ in load.done}
        wait_spooled(a.spool, ids)
        a.stop(signal.SIGKILL)
        time.sleep(REPLICA_TTL + 0.5)  # replica A is presumed dead by now
        private_pg.start()

        b.start()
        spent_on_b = asyncio.run(_spend_until_refused(b.port, key))
        report = b.reconcile()  # while A is down (checked below, after the money)

        a.start()  # replays its spool, then clears its old pending field
        assert a.stop(signal.SIGTERM) == 0
        assert b.stop(signal.SIGTERM) == 0
    finally:
        a.kill()
        b.kill()
    billing = asyncio.run(_billing(db_url, cid, sorted(ids)))
    missing = [i for i in ids if f"usage:{i}" not in billing["charges"]]
    assert not missing, (len(missing), load.statuses)
    assert billing["balance"] == billing["ledger"] == credit_units - billing["charged"]
    assert billing["balance"] >= 0 and billing["negative"] == 0, billing
    assert billing["charged"] == COST * (len(ids) + spent_on_b.get(200, 0))
    # While A was down, reconcile named its uncommitted charges and where they wait.
    assert report.returncode == 1 and "is not running" in report.stdout, report.stdout + report.stderr
    result = b.reconcile()
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stdout + result.stderr
    print(f"\nA answered {len(ids)} (all charged once after its restart), B then answered {spent_on_b}; "
          f"balance {billing['balance']} == ledger {billing['ledger']} units, charged {billing['charged']}")
