"""Relaying `stream: true` chat completions.

Failover happens only before the first byte reaches the client: a route that
fails to connect, answers 5xx/429, or dies before its first chunk is skipped
(`first_answer` with a prime step that reads the first chunk).
After that, the client's stream is this route's stream.

Billing follows what the upstream generated: a client that disconnects
mid-stream stops receiving, but the gateway keeps reading the upstream (for at
most `billing.disconnect_drain_seconds`) to get its usage. If no usage ever
comes, tokens are counted from what was streamed and marked estimated.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiohttp import web

from aigateway.api import call as calls
from aigateway.api.call import Call
from aigateway.api.forward import first_answer, pass_through_refusal, usage_counts
from aigateway.api.gateway import Gateway
from aigateway.api.sse import SSEFilter
from aigateway.api.tokens import count_chat_prompt, ensure_loaded

log = logging.getLogger(__name__)

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _client_wants_usage(body: dict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


async def relay_stream(gateway: Gateway, call: Call, request: web.Request) -> web.StreamResponse:
    wants_usage = _client_wants_usage(call.body)
    options = call.body.get("stream_options")
    call.body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}

    async def prime(upstream) -> tuple[SSEFilter, bytes]:
        sse = SSEFilter(strip_usage=not wants_usage)
        return sse, await _first_block(upstream, sse)

    route, upstream, primed = await first_answer(gateway, call, prime)
    if upstream.status != 200:
        return await pass_through_refusal(gateway, call, route, upstream)
    sse, first = primed
    return await _relay(gateway, call, request, route, upstream, sse, first)


async def _first_block(upstream, sse: SSEFilter) -> bytes:
    while True:
        data = await upstream.content.readany()
        if not data:
            raise ConnectionError("upstream closed the stream before any chunk")
        block = sse.feed(data)
        if block:
            return block


async def _relay(gateway, call, request, route, upstream, sse: SSEFilter, first: bytes) -> web.StreamResponse:
    response = web.StreamResponse(headers={**SSE_HEADERS, "X-Request-Id": call.id})
    client_gone = False
    upstream_error: str | None = None
    try:
        await response.prepare(request)
        await response.write(first)
    except (ConnectionError, RuntimeError):
        client_gone = True
    drain_until = None
    try:
        while not sse.done:
            if client_gone and drain_until is None:
                drain_until = time.monotonic() + gateway.config.billing.disconnect_drain_seconds
            if drain_until is not None:
                data = await asyncio.wait_for(upstream.content.readany(), max(drain_until - time.monotonic(), 0))
            else:
                data = await upstream.content.readany()
            if not data:
                break
            block = sse.feed(data)
            if block and not client_gone:
                try:
                    await response.write(block)
                except (ConnectionError, RuntimeError):
                    client_gone = True
        if not client_gone and (rest := sse.flush()):
            await response.write(rest)
    except asyncio.TimeoutError:
        upstream_error = "client disconnected; upstream drain timed out"
    except Exception as exc:  # the upstream broke mid-stream: tell the client, bill what came
        upstream_error = f"upstream stream broke: {exc.__class__.__name__}"
        log.warning("%s for %s on %s", upstream_error, call.id, route.key)
        if not client_gone:
            message = "The upstream provider ended the stream early. The partial response was billed."
            event = {"error": {"message": message, "type": "server_error", "code": "upstream_stream_error",
                               "param": None}}
            try:
                await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
            except (ConnectionError, RuntimeError):
                client_gone = True
    finally:
        upstream.release()
        counts = usage_counts(sse.usage)
        estimated = counts is None
        if counts is None:
            await ensure_loaded()  # the tokenizer loads in a thread, not on the event loop
            counts = (count_chat_prompt(call.body.get("messages", [])), sse.generated_tokens())
        if client_gone and upstream_error is None:
            upstream_error = "client disconnected"
        await calls.finish(gateway, call, status=200, route=route, input_tokens=counts[0],
                           output_tokens=counts[1], estimated=estimated, error=upstream_error)
    if not client_gone:
        try:
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass
    return response
