"""A chat-completions upstream for the translated routes' tests: text, tool calls, fixed usage.

The upstream model name picks the behaviour:

    fake-chat      text; with `tools` and no tool result yet, a call of the first tool
                   (arguments CALL_ARGUMENTS, streamed in pieces); after a tool result, text
                   that quotes it. Usage TEXT_USAGE / TOOL_USAGE.
    fake-nousage   the same, without any usage (the gateway counts tokens itself)
    fake-drop      a stream that sends TEXT_PIECES[:2], then cuts the connection (no [DONE])
    fake-long      a stream of LONG_PIECES pieces, 20 ms apart (for client disconnects)
    fake-badreq    400 in OpenAI's error shape (the upstream's own refusal: passed on, not billed)

Every body received is kept in RECEIVED (newest last).
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

TEXT_PIECES = ["Hello ", "from ", "the ", "fake ", "upstream."]
CALL_ARGUMENTS = ['{"city"', ': "Par', 'is"}']
# Small enough for any hold (the hold is a ceiling: an upstream reporting more is charged the hold).
TEXT_USAGE = {"prompt_tokens": 19, "completion_tokens": 7, "total_tokens": 26}
TOOL_USAGE = {"prompt_tokens": 41, "completion_tokens": 13, "total_tokens": 54}
LONG_PIECES = 100
RECEIVED = web.AppKey("received", list)


def _answer(body: dict) -> tuple[list[str], list[str] | None, dict]:
    """(text pieces, tool argument pieces or None, usage)."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return ["It is ", "sunny: ", str(last.get("content"))], None, TOOL_USAGE
    if body.get("tools") and body.get("tool_choice") != "none":
        return [], CALL_ARGUMENTS, TOOL_USAGE
    if "long" in body["model"]:
        return ["word "] * LONG_PIECES, None, TEXT_USAGE
    return TEXT_PIECES, None, TEXT_USAGE


def _tool_call(body: dict, arguments: str) -> dict:
    return {"id": "call_fake_1", "type": "function",
            "function": {"name": body["tools"][0]["function"]["name"], "arguments": arguments}}


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json(loads=orjson.loads)
    request.app[RECEIVED].append(body)
    model = body["model"]
    if "badreq" in model:
        return web.json_response({"error": {"message": "This model's maximum context length is 8192 tokens.",
                                            "type": "invalid_request_error", "code": "context_length_exceeded"}},
                                 status=400)
    pieces, arguments, usage = _answer(body)
    with_usage = "nousage" not in model
    if not body.get("stream"):
        message = {"role": "assistant", "content": "".join(pieces) or None}
        if arguments:
            message["tool_calls"] = [_tool_call(body, "".join(arguments))]
        result = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
                  "choices": [{"index": 0, "message": message,
                               "finish_reason": "tool_calls" if arguments else "stop"}]}
        if with_usage:
            result["usage"] = usage
        return web.json_response(result, dumps=lambda v: orjson.dumps(v).decode())

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)

    async def send(choices: list, chunk_usage=None) -> None:
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                 "choices": choices}
        if chunk_usage is not None:
            chunk["usage"] = chunk_usage
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

    await send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for i, piece in enumerate(pieces):
        await send([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        if "drop" in model and i == 1:
            request.transport.close()
            return response
        if "long" in model:
            await asyncio.sleep(0.02)
    if arguments:
        first = _tool_call(body, "")
        await send([{"index": 0, "delta": {"tool_calls": [{"index": 0, **first}]}, "finish_reason": None}])
        for piece in arguments:
            await send([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
                         "finish_reason": None}])
    await send([{"index": 0, "delta": {}, "finish_reason": "tool_calls" if arguments else "stop"}])
    if with_usage and (body.get("stream_options") or {}).get("include_usage"):
        await send([], usage)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def create_fake_app() -> web.Application:
    app = web.Application()
    app[RECEIVED] = []
    app.router.add_post("/v1/chat/completions", chat)
    return app
