"""The watcher against a fake TronGrid: what is credited, what is refused, and exactly once."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from sqlalchemy import func, select, update

from aigateway.accounts.tables import customers
from aigateway.billing.ledger import ledger_sum
from aigateway.billing.tables import ledger_entries
from aigateway.deposits import crediting as crediting_module
from aigateway.deposits.config import DepositsConfig
from aigateway.deposits.tables import deposit_addresses, deposit_transactions, deposits
from aigateway.deposits.tron import address_from_bytes
from tests.deposits.conftest import VECTORS, deposits_section
from tests.deposits.fake_trongrid import OTHER_CONTRACT

STRANGER = address_from_bytes(b"\x22" * 20)  # a valid TRON address that is not ours


async def full_pass(env, watcher):
    """Make every address and pending transaction due, then run one pass."""
    async with env.engine.begin() as conn:
        await conn.execute(update(deposit_addresses).values(last_polled_ms=0))
        await conn.execute(update(deposit_transactions).values(next_check_ms=0))
    return await watcher.run_pass()


async def balance(env, cid) -> int:
    return await env.scalar(select(customers.c.balance).where(customers.c.id == cid))


async def statuses(env) -> dict[str, str]:
    rows = await env.rows(select(deposit_transactions.c.tx_id, deposit_transactions.c.status))
    return {r.tx_id: r.status for r in rows}


async def deposit_entries(env) -> list:
    return await env.rows(select(ledger_entries).where(ledger_entries.c.kind == "deposit")
                          .order_by(ledger_entries.c.id))


async def test_credits_a_solidified_transfer_once_at_the_rate_then(env, tron, monkeypatch):
    monkeypatch.setenv("AIGW_TEST_TRON_KEY", "test-key-123")
    cid, address = await env.customer()
    assert address == VECTORS[0]
    tx = tron.transfer(address, 12_500_000, solid=True)
    w = env.watcher()
    stats = await full_pass(env, w)
    assert stats.credited == 1
    assert await balance(env, cid) == 43_750_000  # 12.5 USDT x 3.50
    [entry] = await deposit_entries(env)
    assert entry.reference == f"deposit:{tx.tx_id}:0"
    assert entry.memo == "USDT deposit 12.5 USDT @ 3.50"
    assert entry.amount == 43_750_000
    [dep] = await env.rows(select(deposits))
    assert (dep.amount_usdt, dep.amount_tmt, dep.rate, dep.status) == (12_500_000, 43_750_000, "3.50", "credited")
    assert dep.block_number == tx.block_number and dep.address == address
    assert all(r[3].get("TRON-PRO-API-KEY") == "test-key-123" for r in tron.requests)
    listing = [r for r in tron.requests if "trc20" in r[1]][0][2]
    assert listing["contract_address"] == env.config.usdt_contract and listing["only_to"] == "true"

    for _ in range(3):  # re-polls change nothing
        await full_pass(env, w)
    assert await balance(env, cid) == 43_750_000 and len(await deposit_entries(env)) == 1
    await w.close()  # hands the lease over

    # The operator changes the rate: the past deposit keeps its rate; a new one gets the new rate.
    new_cfg = DepositsConfig.model_validate(deposits_section(tron.url, rate="4", spread="0.05"))
    w2 = env.watcher(new_cfg)
    tron.transfer(address, 2_000_000, solid=True)
    await full_pass(env, w2)
    rows = await env.rows(select(deposits).order_by(deposits.c.id))
    assert [(d.rate, d.amount_tmt) for d in rows] == [("3.50", 43_750_000), ("3.80", 7_600_000)]
    assert await balance(env, cid) == 43_750_000 + 7_600_000
    async with env.engine.connect() as conn:
        assert await ledger_sum(conn, cid) == await balance(env, cid)


async def test_unsolidified_transfer_waits_as_pending_then_is_credited(env, tron):
    cid, address = await env.customer()
    tx = tron.transfer(address, 5_000_000, confirmed=False)
    w = env.watcher()
    await full_pass(env, w)
    await full_pass(env, w)
    assert await statuses(env) == {tx.tx_id: "pending"}
    assert await balance(env, cid) == 0
    view = await env.service.overview(cid)
    assert [p["tx_id"] for p in view["pending"]] == [tx.tx_id] and view["pending"][0]["amount_usdt"] == "5"
    assert view["credited"] == []
    tron.solidify(tx)
    await full_pass(env, w)
    assert await statuses(env) == {tx.tx_id: "credited"}
    assert await balance(env, cid) == 17_500_000
    view = await env.service.overview(cid)
    assert view["pending"] == []
    assert view["credited"][0]["amount_tmt"] == "17.500000" and view["credited"][0]["amount_usdt"] == "5"
    assert (view["rate"], view["min_deposit"], view["network"]) == ("3.50", "1", "mainnet")


async def test_refuses_a_token_of_another_contract_named_usdt(env, tron):
    cid, address = await env.customer()
    tron.ignore_contract_filter = True  # an API that lists every token
    tron.transfer(address, 50_000_000, contract=OTHER_CONTRACT, symbol="USDT", solid=True)
    # and a listing that claims USDT while the chain's log comes from the other contract
    liar = tron.transfer(address, 60_000_000, solid=True)
    liar.logs = [liar.transfer_log(contract=OTHER_CONTRACT)]
    await full_pass(env, env.watcher())
    assert await statuses(env) == {liar.tx_id: "rejected"}
    assert await balance(env, cid) == 0 and await env.rows(select(deposits)) == []


async def test_refuses_a_failed_transaction(env, tron):
    cid, address = await env.customer()
    tx = tron.transfer(address, 20_000_000, solid=True, result="REVERT")
    await full_pass(env, env.watcher())
    [row] = await env.rows(select(deposit_transactions))
    assert row.status == "rejected" and "REVERT" in row.note
    assert await balance(env, cid) == 0 and tx.info()["result"] == "FAILED"


async def test_zero_and_dust_are_recorded_not_credited(env, tron):
    cid, address = await env.customer()
    zero = tron.transfer(address, 0, solid=True)
    dust = tron.transfer(address, 999_999, solid=True)  # just below the 1 USDT minimum
    exact = tron.transfer(address, 1_000_000, solid=True)
    await full_pass(env, env.watcher())
    assert await statuses(env) == {zero.tx_id: "ignored", dust.tx_id: "ignored", exact.tx_id: "credited"}
    rows = {d.tx_id: d for d in await env.rows(select(deposits))}
    assert (rows[dust.tx_id].status, rows[dust.tx_id].amount_tmt) == ("below_minimum", 0)
    assert rows[zero.tx_id].status == "below_minimum"
    assert await balance(env, cid) == 3_500_000 and len(await deposit_entries(env)) == 1
    view = await env.service.overview(cid)
    assert {i["amount_usdt"] for i in view["ignored"]} == {"0", "0.999999"}


async def test_refuses_transfers_to_addresses_that_are_not_ours(env, tron):
    cid, address = await env.customer()
    tron.ignore_only_to = True  # an API that also lists other people's transfers
    tron.transfer(STRANGER, 9_000_000, solid=True)
    redirected = tron.transfer(address, 9_000_000, solid=True)  # listed for us, but the log pays a stranger
    redirected.logs = [redirected.transfer_log(to=STRANGER)]
    # one transaction, three logs: ours, a stranger's, ours again -> two deposits by log index
    multi = tron.transfer(address, 2_000_000, solid=True)
    multi.logs = [multi.transfer_log(), multi.transfer_log(to=STRANGER, value=7_000_000),
                  multi.transfer_log(value=3_000_000)]
    await full_pass(env, env.watcher())
    assert await statuses(env) == {redirected.tx_id: "rejected", multi.tx_id: "credited"}
    refs = [e.reference for e in await deposit_entries(env)]
    assert refs == [f"deposit:{multi.tx_id}:0", f"deposit:{multi.tx_id}:2"]
    assert await balance(env, cid) == (2 + 3) * 3_500_000


async def test_same_transaction_twice_and_across_pages_credits_once(env, tron):
    cfg = DepositsConfig.model_validate(deposits_section(tron.url, page_limit=2))
    cid, address = await env.customer()
    tron.repeat_across_pages = True
    txs = [tron.transfer(address, 1_000_000 * (i + 1), solid=True, block_timestamp=int(time.time() * 1000) + i)
           for i in range(5)]
    tron.txs.append(txs[2])  # listed twice
    w = env.watcher(cfg)
    await full_pass(env, w)
    assert tron.count("trc20") >= 4  # really paged
    await full_pass(env, w)
    assert len(await deposit_entries(env)) == 5
    assert await balance(env, cid) == 15 * 3_500_000
    assert await env.scalar(select(func.count()).select_from(deposit_transactions)) == 5


async def test_a_crash_between_discovery_and_credit_loses_nothing(env, tron, monkeypatch, caplog):
    cid, address = await env.customer()
    tx = tron.transfer(address, 10_000_000, solid=True)
    first = env.watcher()
    [row] = await env.rows(select(deposit_addresses))
    assert await first.discover(row) == 1  # ...and the process dies here
    assert await statuses(env) == {tx.tx_id: "pending"}

    # The next process crashes in the middle of crediting: its transaction rolls back whole.
    async def power_cut(*_a, **_k):
        raise RuntimeError("power cut")

    monkeypatch.setattr(crediting_module, "post_entry", power_cut)
    crashing = env.watcher()
    with caplog.at_level(logging.WARNING):
        assert await crashing.tick()
    assert "power cut" in caplog.text  # the row backs off with the error in its note
    [seen] = await env.rows(select(deposit_transactions))
    assert seen.failures == 1 and "power cut" in seen.note
    assert await env.rows(select(deposits)) == [] and await statuses(env) == {tx.tx_id: "pending"}
    monkeypatch.undo()
    await crashing.close()

    restarted = env.watcher()
    await full_pass(env, restarted)
    await full_pass(env, restarted)
    assert len(await deposit_entries(env)) == 1 and await balance(env, cid) == 35_000_000


async def test_api_429_5xx_and_garbage_back_off_and_lose_nothing(env, tron, caplog):
    cid, address = await env.customer()
    tx = tron.transfer(address, 3_000_000, solid=True)
    tron.fail(429, b'{"Error": "rate limited"}', path="trc20", headers={"Retry-After": "0"})
    tron.fail(200, b"<html>gateway hiccup</html>", path="trc20")
    tron.fail(200, b'{"success": false, "error": "server busy"}', path="trc20")
    tron.fail(503, b"", path="gettransactioninfobyid")
    tron.fail(200, b'{"id": 12', path="gettransactioninfobyid")  # truncated JSON
    tron.fail(403, b'{"Error": "key over limit"}', path="gettransactioninfobyid")
    w = env.watcher(DepositsConfig.model_validate(deposits_section(tron.url, follow_events=False)))
    with caplog.at_level(logging.WARNING):
        for _ in range(200):
            await w.tick()
            if await balance(env, cid):
                break
            await asyncio.sleep(0.02)
    assert w.backoffs == 6
    assert "backing off" in caplog.text and "HTTP 429" in caplog.text and "not JSON" in caplog.text
    assert await balance(env, cid) == 10_500_000 and await statuses(env) == {tx.tx_id: "credited"}
    assert not tron.faults
    await w.close()


async def test_backoff_blocks_requests_until_it_expires(env, tron):
    await env.customer()
    cfg = DepositsConfig.model_validate(deposits_section(tron.url, backoff_initial=30, backoff_max=60))
    tron.fail(429, path="trc20")
    w = env.watcher(cfg)
    await w.tick()
    before = len(tron.requests)
    for _ in range(5):
        assert await w.tick() is False  # backing off: no request at all
    assert len(tron.requests) == before
    await w.close()


async def test_only_one_watcher_is_active_at_a_time(env, tron):
    await env.customer()
    a, b = env.watcher(), env.watcher()
    assert await a.tick() is True
    assert await b.tick() is False
    assert await a.tick() is True  # renews
    await a.close()  # releases the lease
    assert await b.tick() is True
    assert await a.tick() is False
    await b.close()


async def test_opened_deposit_tab_is_polled_often_others_rarely(env, tron):
    cfg = DepositsConfig.model_validate(deposits_section(tron.url, all_interval=60, hot_interval=0.1,
                                                        follow_events=False))  # per-address mode
    service = env.service.__class__(cfg, env.engine)
    c1, a1 = await env.customer()
    _c2, a2 = await env.customer()
    w = env.watcher(cfg)
    await w.run_pass()  # first pass polls every address once
    service.watch_closely(c1)
    await service.close()  # the mark is written
    tron.requests.clear()
    for _ in range(3):
        await asyncio.sleep(0.12)
        await w.run_pass()
    polled = [r[1] for r in tron.requests if "trc20" in r[1]]
    assert len(polled) == 3 and all(a1 in p for p in polled) and not any(a2 in p for p in polled)


async def test_rescan_finds_old_and_expired_transfers(env, tron):
    cfg = DepositsConfig.model_validate(deposits_section(tron.url, pending_expiry=0.3))
    cid, address = await env.customer()
    old = tron.transfer(address, 4_000_000, solid=True, block_timestamp=int(time.time() * 1000) - 7_200_000)
    stuck = tron.transfer(address, 2_000_000, confirmed=False)
    w = env.watcher(cfg)
    await full_pass(env, w)
    assert await statuses(env) == {stuck.tx_id: "pending"}  # the old one is before the cursor
    await asyncio.sleep(0.35)
    await full_pass(env, w)
    assert await statuses(env) == {stuck.tx_id: "expired"}
    tron.solidify(stuck)
    await full_pass(env, w)
    assert await balance(env, cid) == 0
    revived = await env.service.rescan(address, int(time.time() * 1000) - 3 * 3_600_000)
    assert revived == 1
    await full_pass(env, w)
    assert await statuses(env) == {stuck.tx_id: "credited", old.tx_id: "credited"}
    assert await balance(env, cid) == 6 * 3_500_000
    with pytest.raises(LookupError):
        await env.service.rescan(STRANGER, 0)


async def test_addresses_follow_the_derivation_and_are_permanent(env):
    got = [await env.customer() for _ in range(3)]
    assert [a for _c, a in got] == VECTORS
    assert await env.service.address_for(got[1][0]) == VECTORS[1]
    # many at once: all distinct, indexes never shared
    from aigateway.accounts.service import create_customer

    async with env.engine.begin() as conn:
        ids = [await create_customer(conn, f"bulk{i}@example.com") for i in range(8)]
    addresses = await asyncio.gather(*[env.service.address_for(i) for i in ids])
    assert len(set(addresses) | set(VECTORS)) == 11
    rows = await env.rows(select(deposit_addresses).order_by(deposit_addresses.c.derivation_index))
    assert [r.derivation_index for r in rows] == list(range(11))


async def test_a_damaged_usdt_log_is_retried_not_rejected(env, tron):
    cid, address = await env.customer()
    tx = tron.transfer(address, 3_000_000, solid=True)
    damaged = tx.transfer_log()
    damaged["data"] = "zz" + damaged["data"][2:]
    tx.logs = [damaged]
    w = env.watcher()
    await w.tick()
    # a problem of this one transaction: the row backs off, the watcher does not
    assert w.backoffs == 0 and await statuses(env) == {tx.tx_id: "pending"}
    [row] = await env.rows(select(deposit_transactions))
    assert row.failures == 1 and "malformed" in row.note
    tx.logs = None  # the API answers properly again
    await full_pass(env, w)
    assert await statuses(env) == {tx.tx_id: "credited"} and await balance(env, cid) == 10_500_000


async def test_watch_closely_before_the_address_exists_allocates_and_marks(env):
    from aigateway.accounts.service import create_customer

    async with env.engine.begin() as conn:
        cid = await create_customer(conn, "first-visit@example.com")
    env.service.watch_closely(cid)  # the portal calls this before address_for
    await env.service.close()
    [row] = await env.rows(select(deposit_addresses))
    assert row.customer_id == cid and row.address == VECTORS[0]
    assert row.watch_until_ms > int(time.time() * 1000) + 800_000  # hot for hot_window (900 s)


async def test_events_endpoint_errors_back_off_and_lose_nothing(env, tron, monkeypatch):
    monkeypatch.setenv("AIGW_TEST_TRON_KEY", "test-key-123")
    cid, address = await env.customer()
    tx = tron.transfer(address, 3_000_000, solid=True)
    tron.fail(429, b'{"Error": "rate limited"}', path="/events", headers={"Retry-After": "0"})
    tron.fail(200, b'{"success": false}', path="/events")
    tron.fail(500, b"", path="/events")
    w = env.watcher(DepositsConfig.model_validate(deposits_section(tron.url, all_interval=3600)))
    for _ in range(200):
        await w.tick()
        if await balance(env, cid):
            break
        await asyncio.sleep(0.02)
    assert w.backoffs == 3 and not tron.faults
    assert await balance(env, cid) == 10_500_000 and await statuses(env) == {tx.tx_id: "credited"}
    events = [r for r in tron.requests if r[1].endswith("/events")]
    assert events and all(r[3].get("TRON-PRO-API-KEY") == "test-key-123" for r in events)
    assert all(r[2]["only_confirmed"] == "true" and r[2]["event_name"] == "Transfer" for r in events)
    await w.close()


async def test_failed_with_a_success_receipt_is_rejected_with_a_true_note(env, tron):
    _cid, address = await env.customer()
    tx = tron.transfer(address, 3_000_000, solid=True)
    body = tx.info()
    body["result"] = "FAILED"  # top level says FAILED, the receipt says SUCCESS: not credited
    tx.info = lambda: body
    await full_pass(env, env.watcher())
    [row] = await env.rows(select(deposit_transactions))
    assert row.status == "rejected" and "transaction result FAILED" in row.note
    assert "receipt result" not in row.note  # the receipt did say SUCCESS: no misleading quote of it


async def test_a_foreign_token_is_logged_once_not_on_every_poll(env, tron, caplog):
    _cid, address = await env.customer()
    tron.ignore_contract_filter = True  # the listing shows a token of another contract
    tron.transfer(address, 5_000_000, contract=OTHER_CONTRACT, solid=True)
    w = env.watcher(DepositsConfig.model_validate(deposits_section(tron.url, follow_events=False)))
    with caplog.at_level(logging.INFO):
        for _ in range(4):
            await full_pass(env, w)
    assert caplog.text.count("not the configured USDT") == 1
    assert await statuses(env) == {}


async def test_an_allocated_address_is_matched_by_the_follower_at_once(env, tron):
    w = env.watcher()
    env.service.watcher = w  # as in `aigateway serve`
    await w.follow_events()
    cid, address = await env.customer()  # allocated after the set was loaded
    assert w._ours[address][1] == cid
    tx = tron.transfer(address, 2_000_000, solid=True)
    assert await w.follow_events() == 1 and await statuses(env) == {tx.tx_id: "pending"}
