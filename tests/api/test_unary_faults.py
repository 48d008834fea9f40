"""Unary upstream faults (issue 9, item 6): a body cut partway, an HTML 200, JSON that is no completion.

Each is a route failure: the next route answers and is the only one billed; with no good route the
client gets 503 with Retry-After (never a 500), nothing is charged, and the 503 leaves a usage record.
"""

import asyncio

import aiohttp
import orjson
import pytest

from aigateway.api.tokens import count_chat_prompt
from aigateway.money import request_cost
from tests.api.fake_upstream import GOOD_USAGE

CREDIT = 10_000_000
FAULTS = ["cut", "html", "not-completion"]


def call(gateway, key: str, model: str, endpoint: str = "chat") -> tuple[int, dict, dict]:
    if endpoint == "chat":
        path, body = "/chat/completions", {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
    else:
        # Long enough that the hold (bounded by the body's bytes) covers the fake's 100 prompt tokens.
        path, body = "/embeddings", {"model": model, "input": "Hi there. " * 12}

    async def post():
        async with aiohttp.ClientSession() as session:
            async with session.post(gateway.base_url + path, data=orjson.dumps(body),
                                    headers={"Authorization": f"Bearer {key}"}) as response:
                return response.status, dict(response.headers), orjson.loads(await response.read())

    return asyncio.run(post())


@pytest.mark.parametrize("endpoint, fault", [("chat", f) for f in FAULTS]
                         + [("embeddings", f) for f in ("html", "not-completion")])
def test_a_faulty_route_fails_over_and_only_the_good_route_is_billed(faulty_gateway, endpoint, fault):
    gateway = faulty_gateway
    cid, key = gateway.customer(f"unary-{endpoint}-{fault}@example.com")
    model = f"{fault}-then-good" if endpoint == "chat" else f"embed-{fault}-then-good"
    status, _, body = call(gateway, key, model, endpoint)
    assert status == 200
    if endpoint == "chat":
        assert body["choices"][0]["message"]["content"] == "A good answer."
        expected = request_cost(GOOD_USAGE["prompt_tokens"], GOOD_USAGE["completion_tokens"], 350_000, 1_400_000)
    else:
        assert body["data"][0]["embedding"] == [0.1, 0.2]
        expected = request_cost(GOOD_USAGE["prompt_tokens"], 0, 20_000, 0)  # embeddings: input only
    [usage] = gateway.usage(cid)
    assert (usage.upstream_model, usage.status, usage.estimated) == ("good", 200, False)
    assert usage.cost == expected > 0
    assert gateway.balance(cid) == CREDIT - expected == gateway.ledger_sum(cid)
    assert gateway.reconcile() == []  # `aigateway admin reconcile` finds nothing


@pytest.mark.parametrize("endpoint, fault", [("chat", f) for f in FAULTS]
                         + [("embeddings", f) for f in ("html", "not-completion")])
def test_no_good_route_gives_503_with_retry_after_and_charges_nothing(faulty_gateway, endpoint, fault):
    gateway = faulty_gateway
    cid, key = gateway.customer(f"unary-503-{endpoint}-{fault}@example.com")
    status, headers, body = call(gateway, key, fault if endpoint == "chat" else f"embed-{fault}", endpoint)
    assert status == 503 and headers["Retry-After"] == "30"
    assert body["error"]["code"] == "providers_unavailable" and body["error"]["type"] == "server_error"
    assert "Retry in 30 seconds" in body["error"]["message"]  # says what the header says
    [usage] = gateway.usage(cid)
    assert (usage.status, usage.cost, usage.error) == (503, 0, "providers_unavailable")
    assert gateway.balance(cid) == CREDIT == gateway.ledger_sum(cid)
    assert gateway.reconcile() == []  # `aigateway admin reconcile` finds nothing


def test_a_completion_with_odd_choices_and_no_usage_is_charged_for_its_prompt_not_a_500(faulty_gateway):
    gateway = faulty_gateway
    cid, key = gateway.customer("odd-choices@example.com")
    status, _, body = call(gateway, key, "odd-choices")
    assert status == 200 and body["choices"] == [{"message": "oops"}]
    [usage] = gateway.usage(cid)
    prompt = count_chat_prompt([{"role": "user", "content": "Hi"}])
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (prompt, 0, True)
    assert usage.cost == request_cost(prompt, 0, 350_000, 1_400_000) > 0
    assert gateway.balance(cid) == CREDIT - usage.cost == gateway.ledger_sum(cid)
    assert gateway.reconcile() == []  # `aigateway admin reconcile` finds nothing
