"""The no-overdraft race: many concurrent requests against a small balance.

Two gateway replicas share one PostgreSQL database and one Redis (RedisWallet),
and, for comparison, one gateway holds balances in-process (LocalWallet) on
SQLite and on PostgreSQL. Requests go through the official `openai` SDK.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import openai

from aigateway.billing.ledger import post_entry
from aigateway.config import ModelConfig
from aigateway.money import format_tmt, request_cost, to_units
from aigateway.store.db import create_engine
from tests.conftest import gateway_config

IN, OUT = 350_000, 1_400_000  # the test models' prices: 0.35 / 1.40 TMT per 1M tokens
MESSAGES = [{"role": "user", "content": "Hi there"}]
MAX_TOKENS = 24  # the mock's whole reply is 21 tokens, so a hold always covers the cost
HOLDS_THAT_FIT = 10
REQUESTS = 60

# The mock answers "-slow" models after 1.5 s, so every request of a wave holds at once.
SLOW_MODEL = {"name": "mock-slow", "type": "chat", "input_price": "0.35", "output_price": "1.40",
              "max_output_tokens": 1024, "context_length": 8192,
              "routes": [{"provider": "mock", "model": "mock-chat-slow"}]}


def make_config(mock_upstream, db_url: str, **overrides):
    config = gateway_config(mock_upstream.url, db_url, **overrides)
    config.models.append(ModelConfig.model_validate(SLOW_MODEL))
    return config


async def _fire(targets: list[tuple[str, str]], n: int, model: str) -> list[tuple[int, object]]:
    """n concurrent chat requests, spread round-robin over (base_url, key) targets."""
    clients = [openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=60) for url, key in targets]

    async def one(i: int):
        try:
            reply = await clients[i % len(clients)].chat.completions.create(
                model=model, messages=MESSAGES, max_tokens=MAX_TOKENS)
            return 200, reply
        except openai.APIStatusError as exc:
            return exc.status_code, exc

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for client in clients:
            await client.close()


def fire(targets, n, model):
    return asyncio.run(_fire(targets, n, model))


def hold_size(gateways) -> int:
    """What one request of the race holds, read from a 402 of a customer without money."""
    gw = gateways[0]
    _, key = gw.customer(f"probe-{uuid.uuid4().hex[:6]}@example.com", credit=None)
    [(status, exc)] = fire([(gw.base_url, key)], 1, "mock-slow")
    assert status == 402
    needed = re.search(r"may cost up to ([0-9.]+) TMT", exc.response.json()["error"]["message"]).group(1)
    return to_units(needed)


def check_refusal(exc: openai.APIStatusError) -> None:
    body = exc.response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error["code"] == "insufficient_balance" and error["param"] is None
    assert "Insufficient balance" in error["message"]
    assert isinstance(exc, openai.APIStatusError) and exc.status_code == 402


def race(gateways) -> None:
    """Drain a balance worth ~10 holds with 60 concurrent requests, then check every account."""
    hold = hold_size(gateways)
    start = HOLDS_THAT_FIT * hold + hold // 2
    cid, key = gateways[0].customer("race@example.com", credit=format_tmt(start))
    targets = [(gw.base_url, key) for gw in gateways]

    # Wave 1: every request is in flight at once (slow upstream). Only the holds that fit pass,
    # whichever replica they reach: separate wallets would let each replica pass 10.
    slow = fire(targets, REQUESTS, "mock-slow")
    # Wave 2: fast requests, so settles, group commits and new holds interleave.
    fast = fire(targets, REQUESTS, "llama-3.1-70b")
    results = slow + fast
    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 402}, statuses
    slow_ok = sum(status == 200 for status, _ in slow)
    assert 1 <= slow_ok <= HOLDS_THAT_FIT
    assert statuses.count(402) >= REQUESTS - HOLDS_THAT_FIT  # the limit bit
    for status, exc in results:
        if status == 402:
            check_refusal(exc)

    for gw in gateways:
        gw.flush()
    first = gateways[0]
    balance = first.balance(cid)
    assert balance >= 0
    assert balance == first.ledger_sum(cid)
    costs = [request_cost(r.usage.prompt_tokens, r.usage.completion_tokens, IN, OUT)
             for status, r in results if status == 200]
    charges = first.sql("SELECT amount FROM ledger_entries WHERE customer_id = :cid AND kind = 'charge'", cid=cid)
    assert len(charges) == statuses.count(200) == len(costs)
    assert sorted(-c.amount for c in charges) == sorted(costs)
    assert balance == start - sum(costs)
    # Nothing is left held or pending: every replica offers exactly the committed balance.
    for gw in gateways:
        assert gw.run(gw.gateway.wallet.available(cid)) == balance


# Databases and Redis keys come first among the fixtures, so they outlive the gateways.
def test_two_replicas_sharing_redis_never_overdraw(pg_url, redis_url, prefix, mock_upstream, start_gateway):
    redis_config = {"url": redis_url, "key_prefix": prefix}
    gateways = [start_gateway(make_config(mock_upstream, pg_url, redis=redis_config)) for _ in range(2)]
    assert all(type(gw.gateway.wallet).__name__ == "RedisWallet" for gw in gateways)
    race(gateways)


def test_one_gateway_with_local_wallet_never_overdraws(db_url, mock_upstream, start_gateway):
    gw = start_gateway(make_config(mock_upstream, db_url))
    assert type(gw.gateway.wallet).__name__ == "LocalWallet"
    race([gw])


def test_database_credit_becomes_spendable_on_every_replica(pg_url, redis_url, prefix, mock_upstream,
                                                            start_gateway):
    redis_config = {"url": redis_url, "key_prefix": prefix}
    gateways = [start_gateway(make_config(mock_upstream, pg_url, redis=redis_config)) for _ in range(2)]
    cid, key = gateways[0].customer("credit@example.com", credit=None)
    for gw in gateways:  # both replicas know the empty balance
        [(status, exc)] = fire([(gw.base_url, key)], 1, "llama-3.1-70b")
        assert status == 402
        check_refusal(exc)

    async def credit() -> float:
        other = create_engine(pg_url)  # another tool's connection (the CLI, a deposit watcher)
        try:
            async with other.begin() as conn:
                await post_entry(conn, customer_id=cid, amount=to_units("1"), kind="credit", reference="cli:1")
        finally:
            await other.dispose()
        return time.monotonic()

    credited = asyncio.run(credit())
    seen = {}
    while len(seen) < len(gateways) and time.monotonic() - credited < 5:
        for i, gw in enumerate(gateways):
            if i not in seen and gw.run(gw.gateway.wallet.available(cid)) == to_units("1"):
                seen[i] = time.monotonic() - credited
        time.sleep(0.02)
    assert len(seen) == len(gateways), seen
    assert max(seen.values()) < 3.0, seen  # the refresh runs every second on each replica (~1-2 s)
    for gw in gateways:  # and it is really spendable there
        [(status, reply)] = fire([(gw.base_url, key)], 1, "llama-3.1-70b")
        assert status == 200, reply
