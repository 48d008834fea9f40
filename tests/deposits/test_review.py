"""One bad row never blocks the queue: per-row back-off, needs_review, the operator's review commands."""

from __future__ import annotations

import asyncio
import json
import time

from click.testing import CliRunner
from sqlalchemy import select

from aigateway.accounts.tables import customers
from aigateway.cli import main
from aigateway.deposits import crediting as crediting_module
from aigateway.deposits.config import DepositsConfig
from aigateway.deposits.tables import deposit_addresses, deposit_history, deposit_transactions
from tests.deposits.conftest import VECTORS, deposits_section
from tests.support.waits import wait_until_async

HUGE = 2_700_000_000_000_000_000  # 2.7e18 base units: the TMT credit is above BIGINT


async def _row(env, tx_id):
    [row] = await env.rows(select(deposit_transactions).where(deposit_transactions.c.tx_id == tx_id))
    return row


async def test_an_unprocessable_transfer_is_parked_and_the_rest_credit_on_time(env, tron):
    _bad_cid, bad_address = await env.customer()
    others = [await env.customer() for _ in range(3)]
    bad = tron.transfer(bad_address, HUGE, solid=True)
    watcher = env.watcher()
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        async def bad_seen():  # the bad one is seen and sorted first
            return await env.rows(select(deposit_transactions).where(deposit_transactions.c.tx_id == bad.tx_id))

        await wait_until_async(bad_seen, timeout=5, what="the bad transfer seen")
        start = time.monotonic()
        txs = [tron.transfer(address, 2_000_000, solid=True) for _cid, address in others]
        deadline = start + 5
        while time.monotonic() < deadline:
            balances = [await env.scalar(select(customers.c.balance).where(customers.c.id == cid))
                        for cid, _a in others]
            if all(b == 7_000_000 for b in balances):
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        await task
    assert balances == [7_000_000] * 3, balances
    # on time: within a few of the (test) hot/all intervals of 0.2-0.4 s
    assert elapsed < 3, elapsed
    row = await _row(env, bad.tx_id)
    assert row.status == "needs_review" and "out of range" in row.note
    [parked] = await env.rows(select(deposit_history).where(deposit_history.c.tx_id == bad.tx_id))
    assert parked.action == "parked" and "out of range" in parked.note
    assert {(await _row(env, t.tx_id)).status for t in txs} == {"credited"}


async def test_a_failing_row_backs_off_growing_then_parks(env, tron, monkeypatch):
    cfg = DepositsConfig.model_validate(deposits_section(tron.url, retry_initial=10, retry_max=35, max_failures=4))
    _cid, address = await env.customer()
    tx = tron.transfer(address, 2_000_000, solid=True)
    calls = []

    def broken(*_a, **_k):
        calls.append(1)
        raise ArithmeticError("cannot convert this one")

    monkeypatch.setattr(crediting_module, "tmt_units", broken)
    w = env.watcher(cfg)
    [address_row] = await env.rows(select(deposit_addresses))
    await w.discover(address_row)
    delays = []
    for expected in range(1, 5):
        [row] = await w._due_pending(2**62)  # due or not: check it now
        before = time.time() * 1000
        await w.verify_guarded(row)
        row = await _row(env, tx.tx_id)
        if expected < 4:
            assert row.status == "pending" and row.failures == expected
            assert f"failure {expected}/4" in row.note and "cannot convert this one" in row.note
            delays.append(round((row.next_check_ms - before) / 1000))
    assert delays == [10, 20, 35]  # doubling, capped at retry_max
    assert row.status == "needs_review" and "parked after 4 failures" in row.note
    assert len(calls) == 4


def _config_file(tmp_path, tron, **overrides):
    section = deposits_section(tron.url, **overrides)
    lines = ["discover_ollama = false", "[database]", f'url = "sqlite+aiosqlite:///{tmp_path}/review.db"',
             "[deposits]"]
    for k, v in section.items():
        lines.append(f"{k} = {json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else v}")
    path = tmp_path / "aigateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_review_commands_list_retry_approve_reject(tmp_path, tron, monkeypatch):
    monkeypatch.delenv("AIGATEWAY_DATABASE_URL", raising=False)
    config = _config_file(tmp_path, tron, review_above="100")
    runner = CliRunner()

    def cli(*args: str, ok: bool = True) -> str:
        result = runner.invoke(main, ["--config", str(config), *args], catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    for email in ("a@example.com", "b@example.com"):
        cli("admin", "customer", "create", "--email", email)
        cli("admin", "deposits", "address", "--customer", email)
    bad = tron.transfer(VECTORS[0], HUGE, solid=True)
    big = tron.transfer(VECTORS[1], 250_000_000, solid=True)  # 250 USDT > ceiling of 100
    small = tron.transfer(VECTORS[1], 5_000_000, solid=True)
    cli("deposits-watcher", "--once")
    listed = cli("admin", "deposits", "list", "--status", "needs_review")
    assert bad.tx_id in listed and "out of range" in listed
    assert big.tx_id in listed and "ceiling of 100 USDT" in listed
    assert small.tx_id not in listed
    assert "17.500000" in cli("admin", "balance", "--customer", "2")  # 5 USDT credited, 250 held

    assert "approved" in cli("admin", "deposits", "approve", big.tx_id)
    cli("deposits-watcher", "--once")
    assert "892.500000" in cli("admin", "balance", "--customer", "2")  # + 250 x 3.50

    assert "rejected" in cli("admin", "deposits", "reject", bad.tx_id, "--reason", "not a real transfer")
    listed = cli("admin", "deposits", "list", "--status", "rejected")
    assert bad.tx_id in listed and "not a real transfer" in listed
    assert "cannot approve" in cli("admin", "deposits", "approve", bad.tx_id, ok=False)
    assert "will be checked again" in cli("admin", "deposits", "retry", bad.tx_id)
    cli("deposits-watcher", "--once")
    assert bad.tx_id in cli("admin", "deposits", "list", "--status", "needs_review")  # still out of range
    assert "0.000000" in cli("admin", "balance", "--customer", "1")
    assert "no transaction" in cli("admin", "deposits", "retry", "ab" * 32, ok=False)


async def test_the_deposit_tab_overview_says_how_far_each_deposit_got(env, tron):
    from aigateway.portal.pages import _deposit_view

    cid, address = await env.customer()
    waiting = tron.transfer(address, 2_000_000, confirmed=False)
    credited = tron.transfer(address, 3_000_000, solid=True)
    failed = tron.transfer(address, 4_000_000, solid=True, result="REVERT")
    held = tron.transfer(address, HUGE, solid=True)
    w = env.watcher(DepositsConfig.model_validate(deposits_section(tron.url, follow_events=False)))
    env.service.watch_closely(cid)
    await env.service.close()
    await w.run_pass()
    await w.run_pass()
    view = await env.service.overview(cid)
    progress = {r["tx_id"]: r["progress"] for key in ("pending", "credited", "ignored") for r in view[key]}
    assert progress[waiting.tx_id].startswith("seen on chain")
    assert progress[credited.tx_id] == "credited 10.500000 TMT at 3.50 TMT per USDT"
    assert progress[failed.tx_id].startswith("not credited: the transaction failed on chain")
    assert progress[held.tx_id] == "not credited: held for a review by the operator"
    rows = {r["tx_id"]: r for r in _deposit_view(view)["rows"]}  # what the tab lists
    assert rows[held.tx_id]["label"] == "Not credited" and "review" in rows[held.tx_id]["note"]
    assert str(rows[credited.tx_id]["tmt"]) == '<span class="tmt">10.50</span>'  # portal money format
    assert rows[waiting.tx_id]["label"] == "Pending"
