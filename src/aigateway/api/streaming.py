"""Relaying `stream: true` chat completions.

Failover happens only before the first byte reaches the client: a route that
fails to connect, answers 5xx/429, answers something other than
`text/event-stream` (e.g. JSON: it ignored `stream: true`), or dies before its
first event is skipped (`first_answer` with a prime step that reads the first event).
After that, the client's stream is this route's stream, and it ends only at the
upstream's `data: [DONE]` event. Anything else that ends it (a stall longer than the
route's `read_timeout`, a broken connection, a body that is not SSE, a close without
`[DONE]`) sends the client an error event in OpenAI's shape (the SDKs raise
`APIError` on it) and no `[DONE]`, so no client mistakes a cut stream for a complete one.

Billing follows what the upstream generated: a client that disconnects
mid-stream stops receiving, but the gateway keeps reading the upstream (for at
most `billing.disconnect_drain_seconds`) to get its usage. If no usage ever
comes, tokens are counted from what was streamed and marked estimated.
Invariant: every relayed stream is charged (`Call.charge`, in a `finally` around the whole
relay: `_bill`), and the call's exit settles it exactly once, whatever fails.

The relay (`_relay`) moves bytes: the client's side is `_Client`, the upstream read loop
`_pump`, the mapping of what ended it to a `StreamFault` `_fault_of`; the billing part
(`_bill`) only turns what was streamed into a charge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web

from aigateway.api.call import Call
from aigateway.api.forward import first_answer, pass_through_refusal, usage_counts
from aigateway.api.gateway import Gateway
from aigateway.api.model_name import renamer
from aigateway.api.receipts import expected_charge, with_cost
from aigateway.api.sse import NotSSE, SSEFilter
from aigateway.api.tokens import count_chat_prompt, ensure_loaded
from aigateway.providers.routes import Route
from aigateway.providers.upstream import UnexpectedAnswer
from aigateway.usage import normalise

log = logging.getLogger(__name__)

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True, slots=True)
class StreamFault:
    """Why a stream ended without `[DONE]`: the usage record's text and the client's error event."""

    record: str
    message: str
    code: str = "upstream_stream_error"

    def event(self) -> bytes:
        # OpenAI's error shape as a plain `data:` event: both official SDKs raise APIError on it.
        return b"data: " + orjson.dumps({"error": {"message": self.message, "type": "server_error",
                                                   "param": None, "code": self.code}}) + b"\n\n"


def _client_wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class StreamTransform(Protocol):
    """The hook for another API's stream (api/dialects): chat events in, that API's events out.

    The relay, its failover, drain and settlement are unchanged; only what is written to the
    client passes through the transform. `close` gets the usage the call is billed for.
    """

    def feed(self, block: bytes) -> bytes: ...

    def close(self, input_tokens: int, output_tokens: int) -> bytes: ...

    def fail(self, message: str, code: str) -> bytes: ...


async def relay_stream(gateway: Gateway, call: Call, request: web.Request,
                       transform: StreamTransform | None = None) -> web.StreamResponse:
    wants_usage = (_client_wants_usage(call.body) or call.wants_cost) and transform is None

    def price_usage(usage: dict[str, Any]) -> dict[str, Any]:
        # The usage chunk the client asked for also says what it cost.
        counts = usage_counts(usage)
        return with_cost(usage, expected_charge(call, *counts)) if counts is not None else usage

    options = call.body.get("stream_options")
    call.body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}

    async def prime(upstream: aiohttp.ClientResponse) -> tuple[SSEFilter, bytes]:
        if upstream.content_type != "text/event-stream":
            raise UnexpectedAnswer(f"answered {upstream.content_type or 'no content type'} to a stream request")
        sse = SSEFilter(strip_usage=not wants_usage, rename=renamer(call.model.name, call.model.rewrite_model, call.id),
                        price_usage=price_usage if wants_usage else None)
        return sse, await _first_block(upstream, sse)

    route, upstream, primed = await first_answer(gateway, call, prime)
    if upstream.status != 200 or primed is None:  # (a 200 is always primed)
        return await pass_through_refusal(gateway, call, route, upstream)
    sse, first = primed
    return await _relay(gateway, call, request, route, upstream, sse, first, transform)


async def _first_block(upstream: aiohttp.ClientResponse, sse: SSEFilter) -> bytes:
    while True:
        data = await upstream.content.readany()
        if not data:
            if block := sse.end():
                return block
            raise ConnectionError("upstream closed the stream before any event")
        block = sse.feed(data)
        if block:
            return block


class _DrainOver(Exception):
    """The client left and the upstream did not finish within `disconnect_drain_seconds`."""


class _Client:
    """The client's side of a relayed stream: writes until the client goes, through the transform."""

    __slots__ = ("call_id", "gone", "response", "transform")

    def __init__(self, call_id: str, transform: StreamTransform | None) -> None:
        self.call_id = call_id
        self.transform = transform
        self.response = web.StreamResponse(headers={**SSE_HEADERS, "X-Request-Id": call_id})
        self.gone = False

    async def open(self, request: web.Request) -> None:
        try:
            await self.response.prepare(request)
        except (ConnectionError, RuntimeError):
            self.gone = True

    async def send(self, block: bytes, *, own: bool = False) -> None:
        """Write to the client; upstream events (not `own` ones) pass through the transform."""
        if self.gone or not block:
            return
        if self.transform is not None and not own:
            try:
                block = self.transform.feed(block)
            except Exception:  # a translator bug must not skip settlement: the client misses these events
                log.exception("stream transform failed on %s", self.call_id)
                return
            if not block:
                return
        try:
            await self.response.write(block)
        except (ConnectionError, RuntimeError):
            self.gone = True

    async def end(self) -> None:
        if not self.gone:
            try:
                await self.response.write_eof()
            except (ConnectionError, RuntimeError):
                self.gone = True


async def _relay(gateway: Gateway, call: Call, request: web.Request, route: Route,
                 upstream: aiohttp.ClientResponse, sse: SSEFilter, first: bytes,
                 transform: StreamTransform | None = None) -> web.StreamResponse:
    client = _Client(call.id, transform)
    fault: StreamFault | None = None
    try:
        await client.open(request)
        await client.send(first)
        stall = _StallWatch(upstream, route.provider.read_timeout)
        try:
            fault = await _pump(upstream, sse, client, gateway.config.billing.disconnect_drain_seconds, stall)
        finally:
            stall.stop()
        if fault is not None:
            log.warning("stream %s on %s: %s", call.id, route.key, fault.record)
            await client.send(transform.fail(fault.message, fault.code) if transform else fault.event(), own=True)
        elif transform is not None and not client.gone:
            await client.send(await _closing(call, sse, transform), own=True)
        await client.end()
    finally:
        if sse.done:
            upstream.release()
        else:
            upstream.close()  # a connection left mid-body is never reused
        await _bill(call, route, sse, _record_text(client.gone, fault))
    return client.response


async def _pump(upstream: aiohttp.ClientResponse, sse: SSEFilter, client: _Client, drain_seconds: float,
                stall: _StallWatch) -> StreamFault | None:
    """Relay upstream events to the client until `[DONE]`; what ended the stream otherwise.

    A client that leaves is not a reason to stop: the upstream is read (for at most
    `drain_seconds` more) for the usage the call is billed by."""
    drain_until: float | None = None
    try:
        while not sse.done:
            if client.gone and drain_until is None:
                drain_until = time.monotonic() + drain_seconds
            data = await _read(upstream, drain_until, stall)
            if not data:
                await client.send(sse.end())
                if sse.done:
                    return None
                return StreamFault("upstream closed the stream without [DONE]",
                                   "The upstream provider ended the stream early. The partial response was billed.")
            await client.send(sse.feed(data))
    except Exception as exc:
        return _fault_of(exc, stall.timeout)
    return None


def _fault_of(exc: Exception, read_timeout: float) -> StreamFault:
    """What broke a stream mid-way, as the usage record and the client's error event say it."""
    if isinstance(exc, _DrainOver):
        return StreamFault("upstream drain timed out", "")
    if isinstance(exc, aiohttp.ServerTimeoutError):  # no byte for the route's read timeout
        return StreamFault("upstream stalled",
                           f"The upstream provider sent nothing for {read_timeout:g} s and the stream was "
                           "ended. The partial response was billed.", code="upstream_timeout")
    if isinstance(exc, TimeoutError):  # the route's total timeout
        return StreamFault("upstream timed out", "The upstream provider took too long and the stream was "
                           "ended. The partial response was billed.", code="upstream_timeout")
    if isinstance(exc, NotSSE):
        return StreamFault(f"upstream sent something that is not SSE: {exc}",
                           "The upstream provider sent an invalid stream. The partial response was billed.")
    # The upstream broke mid-stream (reset, bad chunked encoding, ...).
    return StreamFault(f"upstream stream broke: {exc.__class__.__name__}",
                       "The upstream provider ended the stream early. The partial response was billed.")


async def _closing(call: Call, sse: SSEFilter, transform: StreamTransform) -> bytes:
    """The transform's last events, carrying the usage the call is billed for."""
    if sse.usage is None:
        await ensure_loaded()  # counting needs the tokenizer: load it off the event loop
    try:
        return transform.close(*stream_counts(call, sse)[:2])
    except Exception:  # as in `_Client.send`: settlement still runs
        log.exception("stream transform failed to close %s", call.id)
        return b""


class _StallWatch:
    """The route's `read_timeout` for a relayed stream: one timer per stream, not one per chunk.

    aiohttp's `sock_read` cancels and re-creates a timer for every chunk it receives (two new
    objects a chunk, ~5% of the relay's CPU with many streams, and more work for the garbage
    collector). From the first event on, the relay turns that off and keeps this one: only time
    spent waiting for the upstream counts (`waiting_since`), so a client slow to read is never
    taken for a stalled upstream, and while chunks flow the timer fires at most once per timeout.
    A stall ends the stream as aiohttp's would: `ServerTimeoutError` from the read.
    """

    __slots__ = ("_content", "_handle", "_loop", "timeout", "waiting_since")

    def __init__(self, upstream: aiohttp.ClientResponse, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._content = upstream.content
        self.timeout = timeout  # seconds; 0 turns the watch off, as it does aiohttp's
        self.waiting_since: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        protocol = upstream.connection.protocol if upstream.connection is not None else None
        if timeout and protocol is not None:  # (no connection: the body is all here already)
            protocol.read_timeout = None  # aiohttp's timer ends at its next chunk; the next request sets its own
            self._handle = self._loop.call_later(timeout, self._check)

    def now(self) -> float:
        return self._loop.time()

    def _check(self) -> None:
        since = self.waiting_since
        if since is not None and self._loop.time() - since >= self.timeout:
            self._handle = None
            self._content.set_exception(aiohttp.ServerTimeoutError("Timeout on reading data from socket"))
            return
        self._handle = self._loop.call_at((since if since is not None else self._loop.time()) + self.timeout,
                                          self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def _read(upstream: aiohttp.ClientResponse, drain_until: float | None, stall: _StallWatch) -> bytes:
    stall.waiting_since = stall.now()
    try:
        if drain_until is None:
            return await upstream.content.readany()
        remaining = drain_until - time.monotonic()
        if remaining <= 0:
            raise _DrainOver
        try:
            async with asyncio.timeout(remaining) as deadline:
                return await upstream.content.readany()
        except TimeoutError:
            if deadline.expired():
                raise _DrainOver from None
            raise
    finally:
        stall.waiting_since = None


def _record_text(client_gone: bool, fault: StreamFault | None) -> str | None:
    if not client_gone:
        return fault.record if fault else None
    return "client disconnected" + (f"; {fault.record}" if fault else "")


def stream_counts(call: Call, sse: SSEFilter) -> tuple[int, int, bool]:
    """(input, output, estimated): the upstream's usage, else our count of what was streamed."""
    counts = usage_counts(sse.usage)
    if counts is not None:
        return counts[0], counts[1], False
    return _prompt_tokens(call), sse.generated_tokens(), True


def _prompt_tokens(call: Call) -> int:
    try:
        return count_chat_prompt(call.body.get("messages", []))
    except Exception:  # odd message shapes: the prompt bound is still in the hold; count what is sure
        log.exception("could not count the prompt of %s", call.id)
        return 0


# -- billing ---------------------------------------------------------------------------------


async def _bill(call: Call, route: Route, sse: SSEFilter, error: str | None) -> None:
    """Charge the stream: the upstream's usage, else our count of what was streamed (estimated).

    Only decides the cost (`Call.charge`); the call's exit settles it."""
    usage = normalise(sse.usage, route.provider.usage_style)
    if usage is not None:
        call.charge(status=200, route=route, input_tokens=usage.input, output_tokens=usage.output, error=error,
                    usage=usage)
        return
    try:
        await ensure_loaded()  # the tokenizer loads in a thread, not on the event loop
    except asyncio.CancelledError:  # still charged: counting then waits for the load (once per process)
        _charge_counted(call, route, sse, error)
        raise
    _charge_counted(call, route, sse, error)


def _charge_counted(call: Call, route: Route, sse: SSEFilter, error: str | None) -> None:
    call.charge(status=200, route=route, input_tokens=_prompt_tokens(call), output_tokens=sse.generated_tokens(),
                estimated=True, error=error)
