"""Exactly once across replicas: one code redeemed at the same instant on two gateways sharing PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from aigateway.money import to_units
from tests.conftest import gateway_config
from tests.portal.conftest import csrf_of
from tests.vouchers.conftest import logged_in, make_batch, voucher_ledger

pytestmark = pytest.mark.postgres

CUSTOMERS = 12


def test_one_code_on_two_replicas_credits_once(pg_url, start_gateway, mock_upstream):
    replicas = [start_gateway(gateway_config(mock_upstream.url, pg_url)) for _ in range(2)]
    _, issued = make_batch(replicas[0], "25", 1, "race")
    clients, ids, tokens = [], [], []
    for i in range(CUSTOMERS):  # half on each replica
        client, cid = logged_in(replicas[i % 2], f"racer{i}@example.com")
        ids.append(cid)
        tokens.append(csrf_of(client.get("/deposit").text))
        clients.append(client)
    start = threading.Barrier(len(clients))

    def one(i: int) -> str:
        start.wait()
        return clients[i].post("/deposit/voucher", {"csrf": tokens[i], "code": issued[0]}).headers["Location"]

    with ThreadPoolExecutor(len(clients)) as pool:
        outcomes = list(pool.map(one, range(len(clients))))

    assert sum("?r=" in o for o in outcomes) == 1, outcomes
    assert sum(o.endswith("e=invalid") for o in outcomes) == len(clients) - 1, outcomes
    entries = voucher_ledger(replicas[0])
    assert len(entries) == 1 and entries[0][1] == to_units("25")
    balances = {cid: replicas[1].sql("SELECT balance FROM customers WHERE id = :c", c=cid)[0][0] for cid in ids}
    assert sorted(balances.values()) == [0] * (CUSTOMERS - 1) + [to_units("25")]
    winner = entries[0][0]
    assert replicas[0].ledger_sum(winner) == balances[winner]
    assert replicas[0].sql("SELECT count(*) FROM vouchers WHERE status = 'redeemed'")[0][0] == 1
