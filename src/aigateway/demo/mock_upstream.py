"""A local OpenAI-compatible server that answers with canned text ("mock" models).

It speaks the real wire format (JSON bodies, SSE chunks with `usage` when
asked, `data: [DONE]`), so the gateway, the SDKs and the tests exercise the
same code paths as against a real provider. The model name chooses a
behaviour, so one server can play healthy and failing upstreams:

    ...-fail500 / -fail429   answer 500 / 429
    ...-badreq               answer 400 (context_length_exceeded), like a real provider
    ...-nousage              omit `usage` (the gateway must count tokens itself)
    ...-slow                 wait `slow_seconds` before answering
    ...-hang                 never answer
    ...-drop                 stream a few chunks, then cut the connection
    ...-long                 a reply of 200 chunks (for disconnect tests)
    ...-floats / -b64        embeddings: always float arrays / always base64, whatever
                             `encoding_format` asked (by default it is honoured)

GET /_mock/requests returns the last 1,000 bodies it received (newest last).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import time
import uuid
from collections import deque
from typing import Any

import orjson
from aiohttp import web

from aigateway.api.tokens import count_chat_prompt, count_embedding_input, count_text_tokens

REPLY = "Hello! This is a mock reply from the aigateway demo upstream; no real model was called."
RECEIVED: web.AppKey[deque[dict[str, Any]]] = web.AppKey("received", deque)
SLOW_SECONDS = web.AppKey("slow_seconds", float)


def _reply_words(model: str, max_tokens: int | None) -> list[str]:
    words = (REPLY + " ") * (20 if "long" in model else 1)
    pieces = [w + " " for w in words.split()]
    if max_tokens:
        pieces = pieces[:max_tokens]
    return pieces


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _misbehave(request: web.Request, model: str) -> web.Response | None:
    if "fail500" in model:
        return web.json_response({"error": {"message": "mock upstream failure", "type": "server_error"}},
                                 status=500)
    if "fail429" in model:
        return web.json_response({"error": {"message": "rate limited", "type": "rate_limit"}}, status=429,
                                 headers={"Retry-After": "1"})
    if "badreq" in model:
        return web.json_response({"error": {"message": "This model's maximum context length is 8192 tokens.",
                                            "type": "invalid_request_error", "param": "messages",
                                            "code": "context_length_exceeded"}}, status=400)
    if "hang" in model:
        await asyncio.sleep(3600)
    if "slow" in model:
        await asyncio.sleep(request.app[SLOW_SECONDS])
    return None


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json(loads=orjson.loads)
    request.app[RECEIVED].append({**body, "_cookie": request.headers.get("Cookie")})
    model = body.get("model", "")
    if (bad := await _misbehave(request, model)) is not None:
        return bad
    pieces = _reply_words(model, body.get("max_tokens") or body.get("max_completion_tokens"))
    prompt = count_chat_prompt(body.get("messages", []))
    completion = count_text_tokens("".join(pieces))
    with_usage = "nousage" not in model
    ident, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
    n = body.get("n") or 1
    if not body.get("stream"):
        message: dict = {"role": "assistant", "content": "".join(pieces)}
        headers = {"Set-Cookie": "upstream_session=abc; Path=/"}  # a real provider may do this
        if body.get("tools") and body.get("tool_choice") not in (None, "none", "auto"):
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_mock", "type": "function",
                "function": {"name": body["tools"][0]["function"]["name"], "arguments": "{}"}}]}
        result = {"id": ident, "object": "chat.completion", "created": created, "model": model,
                  "choices": [{"index": i, "message": message, "finish_reason": "stop"} for i in range(n)],
                  "system_fingerprint": "mock"}
        if with_usage:
            result["usage"] = _usage(prompt, completion * n)
        return web.Response(body=orjson.dumps(result), content_type="application/json", headers=headers)

    include_usage = with_usage and (body.get("stream_options") or {}).get("include_usage") is True
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)

    def event(choices: list, usage=None, *, usage_field: bool = include_usage) -> bytes:
        chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": choices}
        if usage_field:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    await response.write(event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
    for i, piece in enumerate(pieces):
        await response.write(event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        if "drop" in model and i == 2:
            transport = request.transport
            assert transport is not None  # a request being answered has its connection
            transport.close()  # cut the connection mid-stream, no [DONE]
            return response
        if "long" in model:
            await asyncio.sleep(0.01)
    await response.write(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        await response.write(event([], _usage(prompt, completion)))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest() * (dims // 8 + 1)
    return [round(v / 2**32, 6) for v in struct.unpack(f"<{dims}I", digest[: dims * 4])]


def _encode(vector: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()  # float32 LE, as OpenAI


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json(loads=orjson.loads)
    request.app[RECEIVED].append(body)
    model = body.get("model", "")
    if (bad := await _misbehave(request, model)) is not None:
        return bad
    value = body.get("input")
    inputs = [value] if isinstance(value, str) or (value and isinstance(value[0], int)) else list(value or [])
    base64_out = "b64" in model or ("floats" not in model and body.get("encoding_format") == "base64")
    data = [{"object": "embedding", "index": i, "embedding": _encode(_vector(str(text), 16), base64_out)}
            for i, text in enumerate(inputs)]
    result = {"object": "list", "data": data, "model": model}
    if "nousage" not in model:
        tokens = count_embedding_input(value)
        result["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return web.Response(body=orjson.dumps(result), content_type="application/json")


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [
        {"id": "mock-chat", "object": "model", "created": 0, "owned_by": "mock"},
        {"id": "mock-embed", "object": "model", "created": 0, "owned_by": "mock"},
    ]})


async def received(request: web.Request) -> web.Response:
    received = request.app[RECEIVED]
    return web.Response(body=orjson.dumps(list(received)), content_type="application/json")


def create_mock_app(*, slow_seconds: float = 2.0) -> web.Application:
    app = web.Application(client_max_size=64 * 1024**2)
    app[RECEIVED] = deque(maxlen=1000)  # bounded: the mock also serves load tests
    app[SLOW_SECONDS] = slow_seconds
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/_mock/requests", received)
    return app
