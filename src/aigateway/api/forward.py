"""Sending a call upstream, route after route, until one answers."""

from __future__ import annotations

import logging

import aiohttp
import orjson

from aigateway.api import errors
from aigateway.api.call import Call
from aigateway.api.gateway import Gateway
from aigateway.providers.routes import Route
from aigateway.providers.upstream import RouteFailed

log = logging.getLogger(__name__)

PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings"}


def upstream_body(call: Call, route: Route) -> bytes:
    call.body["model"] = route.upstream_model
    return orjson.dumps(call.body)


async def first_answer(gateway: Gateway, call: Call) -> tuple[Route, aiohttp.ClientResponse]:
    """The first route's response that is not a failure; 503 once every route failed."""
    path = PATHS[call.endpoint]
    for route in gateway.router.order(call.model.routes):
        try:
            response = await gateway.upstream.post(route, path, upstream_body(call, route))
        except RouteFailed as failure:
            log.warning("route %s failed for %s: %s", route.key, call.id, failure.reason)
            gateway.router.failed(route)
            continue
        return route, response
    raise errors.providers_unavailable(call.model.name)


def usage_counts(usage) -> tuple[int, int] | None:
    """(input, output) tokens from an OpenAI `usage` object, or None if it is missing or odd."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int) or prompt < 0 or completion < 0:
        return None
    return prompt, completion


def upstream_error_body(status: int, raw: bytes) -> bytes:
    """An upstream's own 4xx, passed through; wrapped in OpenAI's shape if it is not already."""
    try:
        parsed = orjson.loads(raw)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return raw
        message = parsed.get("error") or parsed.get("message") if isinstance(parsed, dict) else None
    except orjson.JSONDecodeError:
        message = None
    text = message if isinstance(message, str) else raw.decode(errors="replace")[:2000]
    return errors.APIError(status, f"Upstream provider rejected the request: {text}",
                           code="upstream_error").body()
