"""A misbehaving OpenAI-compatible upstream for fault tests (the upstream model name picks the fault).

    good             a correct completion / stream / embedding list, usage GOOD_USAGE
    done-in-text     a stream whose text contains "data: [DONE]", that event split across two writes
    silent           a stream that sends its headers, then nothing
    stall            a stream that sends three chunks, then nothing (until the gateway hangs up)
    slow             a good stream of SLOW_PIECES chunks, SLOW_GAP s apart (each gap under the read
                     timeout, all of them several times it)
    malformed        a stream with the chunk {"choices":[{"delta":"oops"}]} and no usage
    garbage          a stream whose second event is an HTML page
    no-done          a stream that ends cleanly without `data: [DONE]`
    cut              a body cut partway (Content-Length promised, connection closed)
    html             200 with an HTML page
    not-completion   200 with JSON that is not a completion
    json             answers JSON even to `stream: true`
    odd-choices      200 with {"choices": [{"message": "oops"}]} and no usage
"""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

GOOD_USAGE = {"prompt_tokens": 100, "completion_tokens": 200, "total_tokens": 300}
DONE_TEXT = ["Here is how SSE ends: ", "data: [DONE]\n\n", " and the story goes on ", "to the end."]
STALL_TEXT = ["Once ", "upon ", "a time"]
SLOW_PIECES, SLOW_GAP = 8, 0.3
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n\n"


def _chunk(model: str, delta, finish=None, usage=None, *, with_usage=True) -> bytes:
    body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else []}
    if with_usage:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _completion(model: str) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "A good answer."},
                         "finish_reason": "stop"}], "usage": GOOD_USAGE}


async def _sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    return response


async def _pause() -> None:
    await asyncio.sleep(0.05)  # the next write arrives as its own read at the gateway


async def _wait_for_hang_up(request: web.Request) -> None:
    deadline = time.monotonic() + 20
    while request.transport is not None and not request.transport.is_closing() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # silent until the gateway gives up on us


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json(loads=orjson.loads)
    model = body["model"]
    if model == "html":
        return web.Response(body=HTML, content_type="text/html")
    if model == "not-completion":
        return web.json_response({"status": "ok", "detail": "queued"})
    if model == "cut":
        raw = orjson.dumps(_completion(model))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(raw)
        await response.prepare(request)
        await response.write(raw[: len(raw) // 2])
        await _pause()
        request.transport.close()
        return response
    if model == "odd-choices":
        return web.json_response({"object": "chat.completion", "choices": [{"message": "oops"}]})
    if model == "json" or not body.get("stream"):
        return web.json_response(_completion(model))

    response = await _sse(request)
    write = response.write
    if model == "silent":
        await _wait_for_hang_up(request)
        return response
    await write(_chunk(model, {"role": "assistant", "content": ""}))
    if model == "done-in-text":
        for piece in DONE_TEXT:
            event = _chunk(model, {"content": piece})
            if "[DONE]" in piece:  # split inside "[DO|NE]": two reads at the gateway
                cut = event.index(b"[DONE]") + 3
                await write(event[:cut])
                await _pause()
                event = event[cut:]
            await write(event)
            await _pause()
    elif model == "stall":
        for piece in STALL_TEXT:
            await write(_chunk(model, {"content": piece}))
        await _wait_for_hang_up(request)
        return response
    elif model == "slow":
        for i in range(SLOW_PIECES):
            await asyncio.sleep(SLOW_GAP)
            await write(_chunk(model, {"content": f"word{i} "}))
    elif model == "malformed":
        await write(_chunk(model, {"content": "hello there"}, with_usage=False))
        await write(b'data: {"choices":[{"delta":"oops"}]}\n\n')
        await write(_chunk(model, {}, "stop", with_usage=False) + b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    elif model == "garbage":
        await write(_chunk(model, {"content": "first"}))
        await _pause()
        await write(HTML)
        await response.write_eof()
        return response
    elif model == "no-done":
        await write(_chunk(model, {"content": "half a story"}))
        await response.write_eof()
        return response
    else:
        await write(_chunk(model, {"content": "A good answer."}))
    await write(_chunk(model, {}, "stop"))
    await write(_chunk(model, None, usage=GOOD_USAGE) + b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json(loads=orjson.loads)
    model = body["model"]
    if model == "html":
        return web.Response(body=HTML, content_type="text/html")
    if model == "not-completion":
        return web.json_response({"object": "list", "usage": GOOD_USAGE})  # no `data`
    return web.json_response({"object": "list", "model": model, "usage": GOOD_USAGE,
                              "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]})


def create_fake_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    return app
