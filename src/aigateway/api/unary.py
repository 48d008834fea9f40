"""A call answered in one piece (chat without `stream`, embeddings).

The whole body is read and checked inside the failover loop (`first_answer`'s prime
step): a route whose body is cut short, times out, is not JSON (an HTML page) or is
JSON but not a completion / embedding list is a route failure, so the next route is
tried, and the client gets 503 only when every route failed. Invariant: a failed
route is never billed; only a checked answer is passed on and charged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from aigateway.api.call import Call
from aigateway.api.encodings import as_requested
from aigateway.api.forward import first_answer, pass_through_refusal
from aigateway.api.gateway import Gateway
from aigateway.api.model_name import renamer
from aigateway.api.receipts import with_cost
from aigateway.api.tokens import ensure_loaded
from aigateway.providers.upstream import UnexpectedAnswer
from aigateway.usage import normalise

log = logging.getLogger(__name__)

# Our own (input, output) count for a response whose upstream sent no usage.
Estimator = Callable[[Call, dict[str, Any] | None], tuple[int, int]]

# What a 200 answer must hold to be passed on: a completion's choices, an embedding list's data.
_REQUIRED = {"chat": "choices", "embeddings": "data"}


def checked_answer(endpoint: str, raw: bytes) -> dict[str, Any]:
    """The parsed answer, or UnexpectedAnswer if it is not the object the endpoint returns."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UnexpectedAnswer(f"answered 200 with a body that is not JSON ({len(raw)} bytes)") from None
    field = _REQUIRED[endpoint]
    if not isinstance(payload, dict) or not isinstance(payload.get(field), list):
        raise UnexpectedAnswer(f"answered 200 with JSON that has no '{field}' list")
    return payload


# Another API's rendering of a completion (api/dialects): called on the answer, it returns the finisher
# that writes the final body once the usage is counted.
Finisher = Callable[[int, int], bytes]
Render = Callable[[Call, dict[str, Any]], Finisher]


async def answer_unary(gateway: Gateway, call: Call, estimate: Estimator,
                       render: Render | None = None) -> web.Response:
    """`render` translates the completion for another API (api/dialects): its shape inside the
    failover loop (an answer it cannot translate is a route failure), its usage once counted."""
    async def prime(response: aiohttp.ClientResponse) -> tuple[bytes, dict[str, Any], Finisher | None]:
        raw = await response.read()  # a cut body raises ClientPayloadError: a route failure
        payload = checked_answer(call.endpoint, raw)
        if call.endpoint == "embeddings":  # in the encoding the client asked for (base64 / float)
            raw = as_requested(call.body.get("encoding_format"), payload, raw)
        return raw, payload, render(call, payload) if render is not None else None

    route, response, primed = await first_answer(gateway, call, prime)
    if response.status != 200 or primed is None:  # (a 200 is always primed)
        return await pass_through_refusal(gateway, call, route, response)
    response.release()
    raw, payload, finisher = primed
    usage = normalise(payload.get("usage"), route.provider.usage_style)
    counts = (usage.input, usage.output) if usage is not None else None
    estimated = counts is None
    if counts is None:
        await ensure_loaded()  # the tokenizer loads in a thread, not on the event loop
        try:
            counts = estimate(call, payload)
        except Exception:  # an odd answer shape must not skip the charge: count the prompt only
            log.exception("could not count the answer of %s", call.id)
            counts = estimate(call, None)
    if call.endpoint == "embeddings":
        counts = (counts[0], 0)  # embeddings are billed by input tokens only
    cost = call.charge(status=200, route=route, input_tokens=counts[0], output_tokens=counts[1],
                       estimated=estimated, usage=usage if call.endpoint != "embeddings" else None)
    if finisher is not None:  # another API's answer (api/dialects): its own shape and model name
        raw = finisher(*counts)
    else:
        if call.wants_cost:  # `usage: {"include": true}`: the usage object says what the request cost
            shown: dict[str, Any] = payload["usage"] if isinstance(payload.get("usage"), dict) else {
                "prompt_tokens": counts[0], "completion_tokens": counts[1], "total_tokens": sum(counts)}
            payload["usage"] = with_cost(shown, cost)
            raw = orjson.dumps(payload)
            if call.endpoint == "embeddings":  # re-encoded from the upstream's payload: convert again
                raw = as_requested(call.body.get("encoding_format"), payload, raw)
        if (rename := renamer(call.model.name, call.model.rewrite_model,
                              call.id if call.endpoint == "chat" else None)) is not None:
            raw = rename.apply(raw)
    return web.Response(body=raw, content_type="application/json", headers={"X-Request-Id": call.id})
