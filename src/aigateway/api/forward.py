"""Sending a call upstream, route after route, until one answers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import orjson
from aiohttp import web

from aigateway.api import errors
from aigateway.api.call import Call
from aigateway.api.gateway import Gateway
from aigateway.providers.routes import Route
from aigateway.providers.upstream import RouteFailed

log = logging.getLogger(__name__)

PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings"}


def upstream_body(call: Call, route: Route) -> bytes:
    call.body["model"] = route.upstream_model
    try:
        return orjson.dumps(call.body)
    except orjson.JSONEncodeError:  # `begin` refuses bodies too deep to write; this is the backstop
        raise errors.bad_request("The request body cannot be re-encoded for the upstream "
                                 "(JSON nested too deeply).") from None


T = TypeVar("T")


async def first_answer(
    gateway: Gateway, call: Call, prime: Callable[[aiohttp.ClientResponse], Awaitable[T]] | None = None,
) -> tuple[Route, aiohttp.ClientResponse, T | None]:
    """The first route's response that is not a failure; 503 once every route failed.

    `prime`, when given, runs on a 200 response before it counts as an answer: a stream
    reads its first event there, a unary call its whole body, so a route that dies, stalls
    or answers something else (`UnexpectedAnswer`) before anything reached the client is failed over.
    """
    path = PATHS[call.endpoint]
    for route in gateway.router.order(call.model.routes):
        try:
            response = await gateway.upstream.post(route, path, upstream_body(call, route))
        except RouteFailed as failure:
            log.warning("route %s failed for %s: %s", route.key, call.id, failure.reason)
            gateway.router.failed(route)
            continue
        primed = None
        if prime is not None and response.status == 200:
            try:
                primed = await prime(response)
            except Exception as exc:  # timed out, reset, cut short, or not what was asked for
                response.close()  # never reuse a connection left mid-body
                log.warning("route %s failed before answering %s: %r", route.key, call.id, exc)
                gateway.router.failed(route)
                continue
        gateway.router.succeeded(route)
        return route, response, primed
    raise errors.providers_unavailable(call.model.name)


async def pass_through_refusal(gateway: Gateway, call: Call, route: Route,
                               response: aiohttp.ClientResponse) -> web.Response:
    """The upstream's own 4xx (e.g. context too long): the client gets it, nothing is billed."""
    async with response:
        raw = await response.read()
    call.charge(status=response.status, route=route, error="upstream_error")
    return web.Response(status=response.status, body=upstream_error_body(response.status, raw),
                        content_type="application/json", headers={"X-Request-Id": call.id})


def usage_counts(usage: object) -> tuple[int, int] | None:
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
