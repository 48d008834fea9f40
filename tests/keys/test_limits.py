"""Per-key limits through the official SDK: spend cap under concurrency, RPM/TPM/concurrency 429s
with Retry-After, expiry 401, and the same limits across two replicas sharing Redis."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import openai
import pytest

from aigateway.config import ModelConfig
from aigateway.keylimits.service import set_limits
from aigateway.keylimits.values import KeyLimits
from aigateway.money import to_units
from tests.conftest import gateway_config

MESSAGES = [{"role": "user", "content": "Hi there"}]
SLOW_MODEL = {"name": "mock-slow", "type": "chat", "input_price": "0.35", "output_price": "1.40",
              "max_output_tokens": 1024, "context_length": 8192,
              "routes": [{"provider": "mock", "model": "mock-chat-slow"}]}


def make_config(mock_upstream, db_url, **overrides):
    config = gateway_config(mock_upstream.url, db_url, **overrides)
    config.models.append(ModelConfig.model_validate(SLOW_MODEL))
    return config


def limited_key(gateways, email: str, credit: str = "10", **limits) -> tuple[int, str]:
    """A customer's key with these limits, applied on every gateway before it returns."""
    gw = gateways[0]
    cid, secret = gw.customer(email, credit=credit)
    [(key_id,)] = gw.sql("SELECT id FROM api_keys WHERE customer_id = :c", c=cid)

    async def write():
        async with gw.engine.begin() as conn:
            await set_limits(conn, KeyLimits(key_id=key_id, **limits))

    gw.run(write())
    for g in gateways:  # the refresher runs every second; run it now instead of waiting
        g.run(g.gateway.key_limits.refresh())
        assert g.gateway.key_limits.get(key_id) == KeyLimits(key_id=key_id, **limits)
    return key_id, secret


async def _fire(targets, n, model, max_tokens=24):
    clients = [openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=60) for url, key in targets]

    async def one(i):
        try:
            return 200, await clients[i % len(clients)].chat.completions.create(
                model=model, messages=MESSAGES, max_tokens=max_tokens)
        except openai.APIStatusError as exc:
            return exc.status_code, exc

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for client in clients:
            await client.close()


def fire(targets, n, model="llama-3.1-70b"):
    return asyncio.run(_fire(targets, n, model))


def hold_size(gw) -> int:
    """What one request holds, read from the 402 of a customer without money."""
    _, key = gw.customer(f"probe-{uuid.uuid4().hex[:6]}@example.com", credit=None)
    [(status, exc)] = fire([(gw.base_url, key)], 1, "mock-slow")
    assert status == 402
    return to_units(re.search(r"may cost up to ([0-9.]+) TMT", exc.response.json()["error"]["message"]).group(1))


def refusal(exc, status: int, code: str) -> dict:
    assert exc.status_code == status
    assert int(exc.response.headers["Retry-After"]) >= 1
    error = exc.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return error


def key_spend(gw, key_id) -> int:
    gw.flush()
    [(spent,)] = gw.sql("SELECT COALESCE(SUM(cost), 0) FROM usage_records WHERE api_key_id = :k", k=key_id)
    return int(spent)


def spend_cap_race(gateways) -> None:
    hold = hold_size(gateways[0])
    cap = 8 * hold + hold // 2  # room for 8 holds
    key_id, key = limited_key(gateways, "cap@example.com", spend_cap=cap, spend_period="day")
    targets = [(gw.base_url, key) for gw in gateways]
    results = fire(targets, 100, "mock-slow")  # all in flight at once: the holds decide
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 429}, statuses
    assert 1 <= statuses.count(200) <= 8
    for status, exc in results:
        if status == 429:
            assert "spend cap" in refusal(exc, 429, "key_spend_limit_reached")["message"]
    fire(targets, 40)  # fast ones: settles and new holds interleave
    for gw in gateways:
        gw.flush()
    spent = key_spend(gateways[0], key_id)
    [(charged,)] = gateways[0].sql("SELECT -SUM(amount) FROM ledger_entries WHERE kind = 'charge'"
                                   " AND reference IN (SELECT 'usage:' || id FROM usage_records WHERE api_key_id = :k)",
                                   k=key_id)
    assert 0 < spent == charged <= cap


@pytest.fixture
def gateway(mock_upstream, start_gateway, sqlite_url):
    return start_gateway(make_config(mock_upstream, sqlite_url))


def test_spend_cap_holds_under_100_concurrent_requests(gateway):
    spend_cap_race([gateway])


def _avoid_minute_edge() -> None:
    """Fixed one-minute windows: start a rate test early in a minute, not at its last seconds."""
    while time.time() % 60 > 50:
        time.sleep(0.2)


def test_rpm_tpm_concurrency_answer_429_with_retry_after(gateway):
    _avoid_minute_edge()
    _, rpm_key = limited_key([gateway], "rpm@example.com", rpm=3)
    results = [fire([(gateway.base_url, rpm_key)], 1)[0] for _ in range(4)]
    assert [s for s, _ in results] == [200, 200, 200, 429]
    assert refusal(results[3][1], 429, "rate_limit_exceeded")["type"] == "requests"

    _, tpm_key = limited_key([gateway], "tpm@example.com", tpm=10)
    first, second = (fire([(gateway.base_url, tpm_key)], 1)[0] for _ in range(2))
    assert first[0] == 200 and first[1].usage.total_tokens > 10
    assert refusal(second[1], 429, "rate_limit_exceeded")["type"] == "tokens"

    _, conc_key = limited_key([gateway], "conc@example.com", concurrency=2)
    statuses = sorted(s for s, _ in fire([(gateway.base_url, conc_key)], 6, "mock-slow"))
    assert statuses == [200, 200, 429, 429, 429, 429]
    assert fire([(gateway.base_url, conc_key)], 2)[0][0] == 200  # slots come back when requests end


def test_expired_key_is_401_and_a_future_expiry_serves(gateway):
    past = datetime.now(UTC) - timedelta(minutes=1)
    _, old = limited_key([gateway], "expired@example.com", expires_at=past)
    [(status, exc)] = fire([(gateway.base_url, old)], 1)
    assert status == 401 and exc.response.json()["error"]["code"] == "api_key_expired"
    assert isinstance(exc, openai.AuthenticationError)
    _, fresh = limited_key([gateway], "fresh@example.com", expires_at=past + timedelta(days=1))
    assert fire([(gateway.base_url, fresh)], 1)[0][0] == 200


def test_limits_hold_across_two_replicas_sharing_redis(pg_url, redis_url, prefix, mock_upstream, start_gateway):
    redis_config = {"url": redis_url, "key_prefix": prefix}
    gateways = [start_gateway(make_config(mock_upstream, pg_url, redis=redis_config)) for _ in range(2)]
    assert all(type(gw.gateway.key_limits.counters).__name__ == "RedisCounters" for gw in gateways)
    spend_cap_race(gateways)

    _avoid_minute_edge()
    _, rpm_key = limited_key(gateways, "rpm-r@example.com", rpm=4)
    statuses = [fire([(gw.base_url, rpm_key)], 1)[0][0] for gw in gateways for _ in range(3)]
    assert sorted(statuses) == [200, 200, 200, 200, 429, 429]

    _, conc_key = limited_key(gateways, "conc-r@example.com", concurrency=3)
    statuses = sorted(s for s, _ in fire([(gw.base_url, conc_key) for gw in gateways], 8, "mock-slow"))
    assert statuses == [200] * 3 + [429] * 5
