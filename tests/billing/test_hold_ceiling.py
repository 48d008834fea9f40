"""The hold is a hard ceiling: the upstream is told the cap the hold was sized for, and a charge
never exceeds its hold, even when an upstream reports more than it was allowed to produce.

The fake upstream here answers every chat call with the usage its model name asks for:
`over` reports 5,000 output tokens whatever cap it was sent (issue 9, item 1), `honest`
reports 3. It keeps every body it received, so the tests see the cap that went upstream.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner

from aigateway.api.tokens import prompt_token_bound
from aigateway.cli import main
from aigateway.money import request_cost, to_units
from tests.conftest import gateway_config
from tests.support.servers import ServerThread

IN_PRICE, OUT_PRICE = "0.35", "1.40"  # TMT per 1M tokens
CONTEXT, MODEL_CAP = 8192, 1024
REPORTED_OUTPUT = {"over": 5_000, "honest": 3}
PROMPT_TOKENS = 9


class OverReportingUpstream:
    """OpenAI-compatible chat endpoint whose usage ignores the cap it was sent."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.server = ServerThread(self._app).start()
        self.url = self.server.url

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        output = REPORTED_OUTPUT[body["model"]]
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": output, "total_tokens": PROMPT_TOKENS + output}
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            chunk = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
            for event in ({**chunk, "choices": [{"index": 0, "delta": {"content": "word " * 20}}]},
                          {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                          {**chunk, "choices": [], "usage": usage}):
                await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        return web.json_response({
            "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * 20},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": output,
                      "total_tokens": PROMPT_TOKENS + output},
        })

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def upstream():
    server = OverReportingUpstream()
    yield server
    server.stop()


def ceiling_config(upstream_url: str, db_url: str, *, cap_field: str | None = None):
    chat = {"type": "chat", "input_price": IN_PRICE, "output_price": OUT_PRICE, "context_length": CONTEXT,
            "max_output_tokens": MODEL_CAP}
    alt = {"base_url": upstream_url + "/v1", **({"output_cap_field": cap_field} if cap_field else {})}
    models = [
        {"name": name, **chat, "routes": [{"provider": "up", "model": name}]} for name in REPORTED_OUTPUT
    ] + [{"name": "uncapped", "type": "chat", "input_price": IN_PRICE, "output_price": OUT_PRICE,
          "routes": [{"provider": "alt", "model": "honest"}]}]
    return gateway_config(upstream_url, db_url, providers={"up": {"base_url": upstream_url + "/v1"}, "alt": alt},
                          models=models)


def hold_for(raw: bytes, output_tokens: int) -> int:
    """The hold the README rule gives this exact request body (prompt bound + output cap)."""
    return request_cost(prompt_token_bound(raw, CONTEXT), output_tokens, to_units(IN_PRICE), to_units(OUT_PRICE))


def chat_body(model: str = "over", **extra) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], **extra})


async def _post_all(url: str, key: str, bodies: list[bytes]) -> list[tuple[int, dict]]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(raw: bytes):
            async with session.post(url + "/chat/completions", data=raw, headers=headers) as resp:
                return resp.status, await resp.json(content_type=None)

        return await asyncio.gather(*(one(raw) for raw in bodies))


def post_all(gw, key: str, bodies: list[bytes]) -> list[tuple[int, dict]]:
    return asyncio.run(_post_all(gw.base_url, key, bodies))


def capped_report(tmp_path, db_url: str, *args: str) -> list[str]:
    """`aigateway admin usage capped ...` against the test's database: the operator's view."""
    config = tmp_path / "op.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    result = CliRunner().invoke(main, ["--config", str(config), "admin", "usage", "capped", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_sixty_over_reporting_requests_at_once_never_overdraw(start_gateway, upstream, db_url, tmp_path):
    gw = start_gateway(ceiling_config(upstream.url, db_url))
    raw = chat_body(max_tokens=10)
    hold = hold_for(raw, 10)
    fits = 40
    start = fits * hold + hold // 2  # exactly 40 holds fit, whatever the order they come in
    cid, key = gw.customer("ceiling@example.com", credit=None)
    gw.credit(cid, f"0.{start:06d}", "ceiling-credit")
    other, other_key = gw.customer("bystander@example.com", credit="1")
    upstream.bodies.clear()

    answers = post_all(gw, key, [raw] * 60)

    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * fits + [402] * (60 - fits)
    # The upstream was sent the cap the hold was sized for, every time.
    assert len(upstream.bodies) == fits and all(b["max_tokens"] == 10 for b in upstream.bodies)
    records = [r for r in gw.usage(cid) if r.status == 200]
    assert len(records) == fits
    for record in records:
        # charged the hold, not the 7,000+ units the reported counts would cost; counts kept as reported
        assert record.capped and record.cost == hold
        assert (record.input_tokens, record.output_tokens) == (PROMPT_TOKENS, 5_000)
    balance = gw.balance(cid)
    assert balance == start - fits * hold == hold // 2 >= 0
    assert balance == gw.ledger_sum(cid)
    assert gw.reconcile() == []  # `aigateway admin reconcile` finds nothing

    # The operator finds exactly these records, and only this customer's with --customer.
    honest = post_all(gw, other_key, [chat_body("honest", max_tokens=10)])
    assert honest[0][0] == 200 and not gw.usage(other)[0].capped
    lines = capped_report(tmp_path, db_url, "--customer", "ceiling@example.com")
    assert lines[0] == f"{fits} capped usage record(s)"
    listed = {line.split()[2] for line in lines[2:]}
    assert listed == {r.id for r in records}
    assert capped_report(tmp_path, db_url, "--since", "2999-01-01")[0] == "0 capped usage record(s)"
    assert capped_report(tmp_path, db_url, "--customer", str(other))[0] == "0 capped usage record(s)"


def test_single_over_report_on_a_tiny_balance(start_gateway, upstream, db_url):
    """Issue 9's first case: 0.0001 TMT, max_tokens 10, 5,000 tokens reported."""
    gw = start_gateway(ceiling_config(upstream.url, db_url))
    cid, key = gw.customer("tiny@example.com", credit="0.0001")
    raw = chat_body(max_tokens=10)
    [(status, reply)] = post_all(gw, key, [raw])
    assert status == 200 and reply["usage"]["completion_tokens"] == 5_000
    [record] = gw.usage(cid)
    assert record.capped and record.cost == hold_for(raw, 10) < 100
    assert gw.balance(cid) == 100 - record.cost == gw.ledger_sum(cid)
    assert gw.reconcile() == []  # `aigateway admin reconcile` finds nothing


def test_both_cap_fields_the_smaller_wins_and_both_are_sent(start_gateway, upstream, sqlite_url):
    gw = start_gateway(ceiling_config(upstream.url, sqlite_url))
    raw = chat_body(max_completion_tokens=1, max_tokens=8192)
    # Enough for a hold of 1 output token, far too little for 8,192 (or the model's 1,024).
    credit = hold_for(raw, 1) + 5
    assert hold_for(raw, MODEL_CAP) > credit
    cid, key = gw.customer("both@example.com", credit=None)
    gw.credit(cid, f"0.{credit:06d}", "both-credit")
    upstream.bodies.clear()
    [(status, _)] = post_all(gw, key, [raw])
    assert status == 200
    [sent] = upstream.bodies
    assert (sent["max_completion_tokens"], sent["max_tokens"]) == (1, 1)
    [record] = gw.usage(cid)
    assert record.capped and record.cost == hold_for(raw, 1)
    assert gw.balance(cid) == credit - record.cost == gw.ledger_sum(cid)
    assert gw.reconcile() == []  # `aigateway admin reconcile` finds nothing


def test_the_cap_sent_upstream(start_gateway, upstream, sqlite_url):
    gw = start_gateway(ceiling_config(upstream.url, sqlite_url, cap_field="max_completion_tokens"))
    cid, key = gw.customer("fields@example.com", credit="10")

    def sent(model: str, **extra) -> dict:
        upstream.bodies.clear()
        [(status, _)] = post_all(gw, key, [chat_body(model, **extra)])
        assert status == 200
        [body] = upstream.bodies
        return {k: body[k] for k in ("max_tokens", "max_completion_tokens") if k in body}

    # none given: the provider's default field (max_tokens) with the model's cap
    assert sent("honest") == {"max_tokens": MODEL_CAP}
    # asked above the model's cap: lowered to it, in the field the client used
    assert sent("honest", max_completion_tokens=50_000) == {"max_completion_tokens": MODEL_CAP}
    assert sent("honest", max_tokens=7) == {"max_tokens": 7}
    # a provider set to max_completion_tokens; no model cap: the billing default
    default = gw.config.billing.default_max_output_tokens
    assert sent("uncapped") == {"max_completion_tokens": default}
    assert sent("uncapped", max_tokens=10**6) == {"max_tokens": default}
    # honest usage below the hold: charged exactly, not capped
    records = [r for r in gw.usage(cid) if r.model == "honest"]
    assert records and not any(r.capped for r in records)
    assert all(r.cost == request_cost(PROMPT_TOKENS, 3, to_units(IN_PRICE), to_units(OUT_PRICE)) for r in records)


def test_an_over_reporting_stream_is_charged_its_hold(start_gateway, upstream, db_url):
    gw = start_gateway(ceiling_config(upstream.url, db_url))
    cid, key = gw.customer("stream@example.com", credit="0.0001")
    raw = chat_body(max_tokens=10, stream=True, stream_options={"include_usage": True})
    upstream.bodies.clear()

    async def stream() -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session:
            async with session.post(gw.base_url + "/chat/completions", data=raw,
                                    headers={"Authorization": f"Bearer {key}"}) as resp:
                return resp.status, await resp.read()

    status, text = asyncio.run(stream())
    assert status == 200 and b'"completion_tokens":5000' in text and text.rstrip().endswith(b"data: [DONE]")
    assert [b["max_tokens"] for b in upstream.bodies] == [10]
    [record] = gw.usage(cid)
    assert record.stream and record.capped and not record.estimated
    assert record.cost == hold_for(raw, 10) and record.output_tokens == 5_000
    assert gw.balance(cid) == 100 - record.cost == gw.ledger_sum(cid)
    assert gw.reconcile() == []  # `aigateway admin reconcile` finds nothing
