"""End to end: a real gateway with deposits configured, a fake chain, an OpenAI client."""

from __future__ import annotations

import time

import openai
import pytest
from sqlalchemy import select

from aigateway.appkeys import DEPOSITS
from aigateway.billing.tables import ledger_entries
from tests.conftest import gateway_config
from tests.deposits.conftest import VECTORS, deposits_section


def test_a_deposit_makes_the_api_affordable(start_gateway, mock_upstream, sqlite_url, tron):
    section = deposits_section(tron.url, hot_interval=0.3, pending_interval=0.3, all_interval=5)
    gw = start_gateway(gateway_config(mock_upstream.url, sqlite_url, deposits=section))
    cid, key = gw.customer("depositor@example.com", credit=None)
    client = openai.OpenAI(api_key=key, base_url=gw.base_url, max_retries=0)
    ask = dict(model="llama-3.1-70b", messages=[{"role": "user", "content": "Hello!"}])
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(**ask)
    assert refused.value.status_code == 402

    port = gw.app[DEPOSITS]

    async def open_deposit_tab():
        view = await port.overview(cid)
        port.watch_closely(cid)
        return view

    view = gw.run(open_deposit_tab())
    assert view["address"] == VECTORS[0] and view["rate"] == "3.50" and view["pending"] == []

    tx = tron.transfer(view["address"], 12_500_000, confirmed=False)
    gw.wait_for(lambda: gw.run(port.overview(cid))["pending"], timeout=5)
    assert gw.balance(cid) == 0

    tron.solidify(tx)
    solid_at = time.monotonic()
    gw.wait_for(lambda: gw.balance(cid) == 43_750_000, timeout=5, interval=0.02)
    assert time.monotonic() - solid_at < 0.3 + 0.5  # within one poll interval (plus a tick)

    [entry] = gw.run(_deposit_entries(gw.engine, cid))
    assert (entry.kind, entry.reference, entry.memo) == (
        "deposit", f"deposit:{tx.tx_id}:0", "USDT deposit 12.5 USDT @ 3.50")
    view = gw.run(port.overview(cid))
    assert view["pending"] == [] and view["credited"][0]["amount_tmt"] == "43.750000"

    # The running gateway's wallet re-reads balances every second: the call is now affordable.
    def call_succeeds():
        try:
            return client.chat.completions.create(**ask)
        except openai.APIStatusError as exc:
            assert exc.status_code == 402
            return None

    reply = gw.wait_for(call_succeeds, timeout=5, interval=0.2)
    assert reply.choices[0].message.content
    assert gw.balance(cid) < 43_750_000


async def _deposit_entries(engine, cid):
    async with engine.connect() as conn:
        return (await conn.execute(select(ledger_entries).where(ledger_entries.c.customer_id == cid)
                                   .where(ledger_entries.c.kind == "deposit"))).all()


def test_gateway_without_deposits_section_has_no_port(gateway):
    assert DEPOSITS not in gateway.app
