"""Anthropic's Messages API (`POST /v1/messages`) over chat completions.

The same `gw_` keys work as `x-api-key` or as a Bearer token. `max_tokens` is required, as
Anthropic requires it. Errors on this route use Anthropic's shape
(`{"type": "error", "error": {"type", "message"}}`), so Anthropic's SDKs raise their usual
exception classes; the status codes are the gateway's own (402 for a short balance).
"""

from __future__ import annotations

import re
from typing import Any, cast

import orjson
from aiohttp import web

from aigateway.api import errors
from aigateway.api.call import Call
from aigateway.api.dialects import base
from aigateway.api.dialects.base import ChatDeltas, Finisher, chat_message, require, sse_event, text_of, tool_calls

_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                 "content_filter": "refusal"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                503: "overloaded_error"}


def error_body(status: int, message: str) -> bytes:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def error_response(exc: errors.APIError) -> web.Response:
    return web.Response(status=exc.status, body=error_body(exc.status, exc.message), content_type="application/json",
                        headers=exc.headers)


def reshape_error(response: web.Response) -> web.Response:
    """An answer in OpenAI's error shape (an upstream's refusal) -> the same status in Anthropic's shape."""
    try:
        error = orjson.loads(cast(bytes, response.body)).get("error")  # None: TypeError
        message = error.get("message") if isinstance(error, dict) else None
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        message = None
    return web.Response(status=response.status, content_type="application/json",
                        body=error_body(response.status, message or "The request failed."))


def check_version(request: web.Request) -> None:
    version = request.headers.get("anthropic-version")
    if version is not None and not _VERSION.fullmatch(version.strip()):
        raise errors.bad_request("The 'anthropic-version' header must be a date such as 2023-06-01.")


def _image(block: dict[str, Any], param: str) -> dict[str, Any]:
    source: Any = block.get("source")
    require(isinstance(source, dict), f"'{param}': an image block needs a 'source'.", param)
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    else:
        require(source.get("type") == "url" and isinstance(source.get("url"), str),
                f"'{param}': an image source must be base64 or url.", param)
        url = source["url"]
    return {"type": "image_url", "image_url": {"url": url}}


def _turn(role: str, content: Any, param: str) -> list[dict[str, Any]]:
    """One Anthropic message -> chat messages (tool results become `tool` messages, first)."""
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    require(isinstance(content, list), f"'{param}.content' must be a string or an array of content blocks.", param)
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        where = f"{param}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            require(isinstance(block.get("text"), str), f"'{where}': a text block needs 'text'.", where)
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image" and role == "user":
            parts.append(_image(block, where))
        elif kind == "tool_use" and role == "assistant":
            require(isinstance(block.get("id"), str) and isinstance(block.get("name"), str),
                    f"'{where}': a tool_use block needs 'id' and 'name'.", where)
            calls.append({"id": block["id"], "type": "function", "function": {
                "name": block["name"], "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind == "tool_result" and role == "user":
            require(isinstance(block.get("tool_use_id"), str), f"'{where}': a tool_result needs 'tool_use_id'.", where)
            value = block.get("content", "")
            text = text_of(value, where) if value else ""
            if block.get("is_error"):
                text = f"Error: {text}"
            results.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # an earlier turn's reasoning: chat models take no such input
        else:
            raise errors.bad_request(f"'{where}': content block type {kind!r} is not supported here "
                                     "(supported: text, image, tool_use, tool_result).", where)
    out = results
    if calls:
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        out.append({"role": "assistant", "content": text or None, "tool_calls": calls})
    elif parts:
        plain = all(p["type"] == "text" for p in parts)
        out.append({"role": role, "content": "".join(p["text"] for p in parts) if plain else parts})
    return out


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return function


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tools = body.get("tools")
    if tools:
        out["tools"] = base.function_tools(tools, lambda tool: tool.get("type") in (None, "custom"),
                                      "only client tools (a 'name' and an 'input_schema') are supported.", _function)
    choice = body.get("tool_choice")
    if choice is not None:
        kind: Any = choice.get("type") if isinstance(choice, dict) else None
        mapped: Any = {"auto": "auto", "any": "required", "none": "none"}.get(kind)
        if kind == "tool":
            require(isinstance(choice.get("name"), str), "'tool_choice' of type tool needs a 'name'.", "tool_choice")
            mapped = {"type": "function", "function": {"name": choice["name"]}}
        require(mapped is not None, "'tool_choice' must be auto, any, tool or none.", "tool_choice")
        out["tool_choice"] = mapped
        if choice.get("disable_parallel_tool_use") is True and tools:
            out["parallel_tool_calls"] = False
    return out


class AnthropicDialect:
    name = "messages"

    def to_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        cap = body.get("max_tokens")
        require(isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1,
                "'max_tokens' is required and must be a positive integer.", "max_tokens")
        messages: list[dict[str, Any]] = []
        system = body.get("system")
        if system:
            messages.append({"role": "system", "content": text_of(system, "system")})
        turns: Any = body.get("messages")
        require(isinstance(turns, list) and bool(turns), "'messages' is required and must be a non-empty array.",
                "messages")
        for i, turn in enumerate(turns):
            param = f"messages[{i}]"
            require(isinstance(turn, dict) and turn.get("role") in ("user", "assistant"),
                    f"'{param}.role' must be user or assistant.", param)
            messages += _turn(turn["role"], turn.get("content"), param)
        chat: dict[str, Any] = {"model": body.get("model"), "messages": messages, "max_tokens": cap}
        for field in ("temperature", "top_p", "stream"):
            if body.get(field) is not None:
                chat[field] = body[field]
        stops = body.get("stop_sequences")
        if stops:
            require(isinstance(stops, list) and all(isinstance(s, str) for s in stops),
                    "'stop_sequences' must be an array of strings.", "stop_sequences")
            chat["stop"] = stops
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
            chat["user"] = metadata["user_id"]
        chat.update(_tools(body))
        return chat

    def _message(self, call: Call, content: list[Any], stop_reason: str | None) -> dict[str, Any]:
        return {"id": "msg_" + call.id.removeprefix("req_"), "type": "message", "role": "assistant",
                "model": call.model.name, "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}

    def answer(self, call: Call, completion: dict[str, Any]) -> Finisher:
        message, finish = chat_message(completion)
        content: list[dict[str, Any]] = []
        if isinstance(message.get("content"), str) and message["content"]:
            content.append({"type": "text", "text": message["content"]})
        for i, (call_id, name, arguments) in enumerate(tool_calls(message)):
            content.append({"type": "tool_use", "id": call_id or f"toolu_{call.id}_{i}", "name": name,
                            "input": _arguments(arguments)})
        answer = self._message(call, content, _STOP_REASONS.get(finish or "stop", "end_turn"))

        def finish_with(input_tokens: int, output_tokens: int) -> bytes:
            answer["usage"] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
            return orjson.dumps(answer)

        return finish_with

    def stream(self, call: Call) -> AnthropicStream:
        return AnthropicStream(self, call)


def _arguments(arguments: str) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}  # the model wrote invalid JSON: Anthropic's `input` is always an object
    return value if isinstance(value, dict) else {}


class AnthropicStream:
    """Chat chunks -> message_start, content blocks (start / deltas / stop), message_delta, message_stop.

    Blocks are strictly one after another, as Anthropic sends them: a text block is stopped
    when a tool call starts, a tool block when the next one starts. Hazard: an upstream that
    interleaves the argument pieces of parallel tool calls would send a piece for a stopped
    block; such a piece is dropped (OpenAI-compatible upstreams send each call whole, in turn).
    """

    def __init__(self, dialect: AnthropicDialect, call: Call) -> None:
        self.dialect, self.call = dialect, call
        self.deltas = ChatDeltas()
        self.started = False
        self.blocks = 0  # blocks started so far
        self.open: tuple[str, object] | None = None  # ("text", None) or ("tool", chat index)
        self.tool_index: dict[object, int] = {}

    def _start(self) -> list[bytes]:
        self.started = True
        message = self.dialect._message(self.call, [], None)
        return [sse_event("message_start", {"type": "message_start", "message": message})]

    def _stop_open(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [sse_event("content_block_stop", {"type": "content_block_stop", "index": self.blocks - 1})]

    def _begin(self, kind: tuple[str, object], block: dict[str, Any]) -> list[bytes]:
        out = self._stop_open()
        self.open = kind
        self.blocks += 1
        return out + [sse_event("content_block_start", {"type": "content_block_start", "index": self.blocks - 1,
                                                        "content_block": block})]

    def feed(self, block: bytes) -> bytes:
        out = [] if self.started else self._start()
        for piece in self.deltas.pieces(block):
            if piece[0] == "text":
                if self.open != ("text", None):
                    out += self._begin(("text", None), {"type": "text", "text": ""})
                delta = {"type": "text_delta", "text": piece[1]}
            else:
                index, call_id, name, arguments = piece[1:]
                if index not in self.tool_index:
                    self.tool_index[index] = self.blocks
                    out += self._begin(("tool", index), {"type": "tool_use", "id": call_id or
                                                         f"toolu_{self.call.id}_{index}", "name": name or "",
                                                         "input": {}})
                elif self.open != ("tool", index):
                    continue  # a piece of a stopped block (see the class docstring)
                if not arguments:
                    continue
                delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(sse_event("content_block_delta", {"type": "content_block_delta", "index": self.blocks - 1,
                                                         "delta": delta}))
        return b"".join(out)

    def close(self, input_tokens: int, output_tokens: int) -> bytes:
        out = ([] if self.started else self._start()) + self._stop_open()
        stop = _STOP_REASONS.get(self.deltas.finish_reason or "stop", "end_turn")
        out.append(sse_event("message_delta", {"type": "message_delta",
                                               "delta": {"stop_reason": stop, "stop_sequence": None},
                                               "usage": {"input_tokens": input_tokens,
                                                         "output_tokens": output_tokens}}))
        out.append(sse_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def fail(self, message: str, code: str) -> bytes:
        return sse_event("error", {"type": "error", "error": {"type": "api_error", "message": message}})
