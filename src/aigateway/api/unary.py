"""A call answered in one piece (chat without `stream`, embeddings)."""

from __future__ import annotations

from typing import Callable

import orjson
from aiohttp import web

from aigateway.api import call as calls
from aigateway.api.call import Call
from aigateway.api.forward import first_answer, pass_through_refusal, usage_counts
from aigateway.api.gateway import Gateway
from aigateway.api.tokens import ensure_loaded

# Our own (input, output) count for a response whose upstream sent no usage.
Estimator = Callable[[Call, dict | None], tuple[int, int]]


async def answer_unary(gateway: Gateway, call: Call, estimate: Estimator) -> web.Response:
    route, response, _ = await first_answer(gateway, call)
    if response.status != 200:
        return await pass_through_refusal(gateway, call, route, response)
    async with response:
        raw = await response.read()
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        payload = None
    counts = usage_counts(payload.get("usage")) if payload else None
    estimated = counts is None
    if counts is None:
        await ensure_loaded()  # the tokenizer loads in a thread, not on the event loop
        counts = estimate(call, payload)
    if call.endpoint == "embeddings":
        counts = (counts[0], 0)  # embeddings are billed by input tokens only
    await calls.finish(gateway, call, status=200, route=route, input_tokens=counts[0], output_tokens=counts[1],
                       estimated=estimated)
    return web.Response(body=raw, content_type="application/json", headers={"X-Request-Id": call.id})
