"""OpenAI's Responses API (`POST /v1/responses`), stateless, over chat completions.

Stateless by design: nothing is stored, so `previous_response_id`, `conversation`,
`store: true`, `background` and `item_reference` inputs are refused with a 400 that says
to resend the history as input items (what `store: false` clients do). Storing would put
every answer in the database for an unbounded time and make each turn a database read on
the hot path; see the README.

Answers carry the ids of their items, as OpenAI's do, but a later request cannot refer
to them (see above). `usage` is what the call is billed for.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from aigateway.api import errors
from aigateway.api.call import Call
from aigateway.api.dialects import base
from aigateway.api.dialects.base import ChatDeltas, Finisher, chat_message, require, sse_event, text_of, tool_calls

_STATEFUL = ("previous_response_id", "conversation")
_PASSED = ("temperature", "top_p", "parallel_tool_calls", "user", "stream")
_FINISH_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _stateless_refusal(what: str, param: str) -> errors.APIError:
    return errors.bad_request(
        f"{what} is not supported: this gateway's /v1/responses is stateless and stores no responses. "
        "Send the whole conversation as 'input' items (and 'store': false), as clients do with store off.",
        param=param)


def _content(content: Any, role: str, param: str) -> Any:
    """Responses content (a string or input parts) -> chat content."""
    if isinstance(content, str):
        return content
    require(isinstance(content, list), f"'{param}' must be a string or an array of content parts.", param)
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            require(isinstance(part.get("text"), str), f"'{param}': a text part needs 'text'.", param)
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        elif kind == "input_image" and role == "user":
            url = part.get("image_url")
            require(isinstance(url, str), f"'{param}': only images given by 'image_url' are supported.", param)
            image = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise errors.bad_request(f"'{param}': content part type {kind!r} is not supported "
                                     "(supported: input_text, output_text, input_image with image_url).", param)
    if role != "user" or all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts if p["type"] == "text")
    return parts


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        require(isinstance(instructions, str), "'instructions' must be a string.", "instructions")
        messages.append({"role": "system", "content": instructions})
    value: Any = body.get("input")
    if isinstance(value, str):
        require(bool(value), "'input' must not be empty.", "input")
        return messages + [{"role": "user", "content": value}]
    require(isinstance(value, list) and bool(value), "'input' is required: a string or an array of input items.",
            "input")
    for i, item in enumerate(value):
        param = f"input[{i}]"
        require(isinstance(item, dict), f"'{param}' must be an object.", param)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            require(role in ("user", "assistant", "system", "developer"),
                    f"'{param}.role' must be user, assistant, system or developer.", param)
            chat_role = "system" if role == "developer" else role
            messages.append({"role": chat_role, "content": _content(item.get("content"), chat_role, param)})
        elif kind == "function_call":
            require(isinstance(item.get("call_id"), str) and isinstance(item.get("name"), str),
                    f"'{param}': a function_call needs 'call_id' and 'name'.", param)
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": str(item.get("arguments") or "{}")}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls of one turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            require(isinstance(item.get("call_id"), str), f"'{param}': a function_call_output needs 'call_id'.",
                    param)
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": output if isinstance(output, str) else text_of(output, param)})
        elif kind == "item_reference":
            raise _stateless_refusal("An 'item_reference' input item", param)
        elif kind == "reasoning":
            continue  # a reasoning summary of an earlier turn: chat models take no such input
        else:
            raise errors.bad_request(f"'{param}': input item type {kind!r} is not supported (supported: message, "
                                     "function_call, function_call_output).", param)
    return messages


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    function = {"name": tool["name"]}
    for field in ("description", "parameters", "strict"):
        if tool.get(field) is not None:
            function[field] = tool[field]
    return function


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tools = body.get("tools")
    if tools:
        out["tools"] = base.function_tools(tools, lambda tool: tool.get("type") == "function",
                                      "only function tools are supported (type 'function' with a 'name').", _function)
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        require(choice in ("auto", "none", "required"), "'tool_choice' must be auto, none, required or a "
                "function.", "tool_choice")
        out["tool_choice"] = choice
    elif isinstance(choice, dict):
        require(choice.get("type") == "function" and isinstance(choice.get("name"), str),
                "'tool_choice' may name a function tool only.", "tool_choice")
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    return out


def _text_format(body: dict[str, Any]) -> dict[str, Any]:
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return {}
    if fmt.get("type") == "json_object":
        return {"response_format": {"type": "json_object"}}
    require(fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict),
            "'text.format' must be text, json_object or json_schema with a 'schema'.", "text")
    schema = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
    if fmt.get("strict") is not None:
        schema["strict"] = fmt["strict"]
    return {"response_format": {"type": "json_schema", "json_schema": schema}}


class ResponsesDialect:
    name = "responses"

    def __init__(self) -> None:
        self.request: dict[str, Any] = {}

    def to_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        self.request = body
        for field in _STATEFUL:
            if body.get(field) is not None:
                raise _stateless_refusal(f"'{field}'", field)
        if body.get("store") is True:
            raise _stateless_refusal("'store': true", "store")
        if body.get("background") is True:
            raise _stateless_refusal("'background': true", "background")
        chat: dict[str, Any] = {"model": body.get("model"), "messages": _messages(body)}
        for field in _PASSED:
            if body.get(field) is not None:
                chat[field] = body[field]
        if body.get("max_output_tokens") is not None:
            chat["max_tokens"] = body["max_output_tokens"]  # checked and capped by `begin`
        chat.update(_tools(body))
        chat.update(_text_format(body))
        return chat

    # ------------------------------------------------------------------ answers

    def _response(self, call: Call, status: str, output: list[Any], finish: str | None) -> dict[str, Any]:
        body = self.request
        incomplete = _FINISH_INCOMPLETE.get(finish or "")
        return {
            "id": "resp_" + call.id.removeprefix("req_"), "object": "response", "created_at": int(time.time()),
            "status": "incomplete" if status == "completed" and incomplete else status,
            "model": call.model.name, "output": output, "error": None,
            "incomplete_details": {"reason": incomplete} if incomplete and status == "completed" else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {}, "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "temperature": body.get("temperature"), "top_p": body.get("top_p"),
            "tool_choice": body.get("tool_choice") or "auto", "tools": body.get("tools") or [],
            "text": body.get("text") or {"format": {"type": "text"}}, "store": False, "usage": None,
        }

    def answer(self, call: Call, completion: dict[str, Any]) -> Finisher:
        message, finish = chat_message(completion)
        prefix = call.id.removeprefix("req_")
        output: list[dict[str, Any]] = []
        content = message.get("content")
        if isinstance(content, str) and content:
            output.append(_message_item(f"msg_{prefix}", content, "completed"))
        for i, (call_id, name, arguments) in enumerate(tool_calls(message)):
            output.append(_function_item(f"fc_{prefix}_{i}", call_id or f"call_{prefix}_{i}", name, arguments,
                                         "completed"))
        response = self._response(call, "completed", output, finish)

        def finish_with(input_tokens: int, output_tokens: int) -> bytes:
            response["usage"] = usage(input_tokens, output_tokens)
            return orjson.dumps(response)

        return finish_with

    def stream(self, call: Call) -> ResponsesStream:
        return ResponsesStream(self, call)


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" \
        else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _function_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


class ResponsesStream:
    """Chat chunks -> Responses events: created, then per output item added / deltas / done, then completed.

    Items are in the order they start: the text message, then each function call. A text
    item is closed when a tool call starts (text after it opens a new message item); tool
    calls are closed at the end (an upstream may interleave the argument pieces of parallel calls).
    """

    def __init__(self, dialect: ResponsesDialect, call: Call) -> None:
        self.dialect, self.call = dialect, call
        self.prefix = call.id.removeprefix("req_")
        self.deltas = ChatDeltas()
        self.sequence = 0
        self.started = False
        self.output: list[dict[str, Any]] = []  # items in output order, with their text / arguments so far
        self.text_at: int | None = None  # output index of the open text item
        self.tools: dict[int, int] = {}  # chat tool index -> output index
        self.closed: set[int] = set()

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse_event(kind, data)

    def _start(self) -> list[bytes]:
        self.started = True
        response = self.dialect._response(self.call, "in_progress", [], None)
        return [self._event("response.created", response=response),
                self._event("response.in_progress", response=response)]

    def feed(self, block: bytes) -> bytes:
        out = [] if self.started else self._start()
        for piece in self.deltas.pieces(block):
            if piece[0] == "text":
                out += self._text(piece[1])
            else:
                out += self._tool(*piece[1:])
        return b"".join(out)

    def _text(self, text: str) -> list[bytes]:
        out = []
        if self.text_at is None or self.text_at in self.closed:  # the first text, or text after tool calls
            self.text_at = len(self.output)
            suffix = f"_{self.text_at}" if self.text_at else ""
            item = _message_item(f"msg_{self.prefix}{suffix}", "", "in_progress")
            self.output.append({**item, "_text": []})
            out.append(self._event("response.output_item.added", output_index=self.text_at, item=item))
            out.append(self._event("response.content_part.added", item_id=item["id"], output_index=self.text_at,
                                   content_index=0, part={"type": "output_text", "text": "", "annotations": []}))
        item = self.output[self.text_at]
        item["_text"].append(text)
        out.append(self._event("response.output_text.delta", item_id=item["id"], output_index=self.text_at,
                               content_index=0, delta=text, logprobs=[]))
        return out

    def _tool(self, index: int, call_id: str | None, name: str | None, arguments: str) -> list[bytes]:
        out = []
        if self.text_at is not None and self.text_at not in self.closed:
            out += self._close(self.text_at)
        at = self.tools.get(index)
        if at is None:
            at = self.tools[index] = len(self.output)
            n = len(self.tools) - 1
            item = _function_item(f"fc_{self.prefix}_{n}", call_id or f"call_{self.prefix}_{n}", name or "", "",
                                  "in_progress")
            self.output.append({**item, "_text": []})
            out.append(self._event("response.output_item.added", output_index=at, item=item))
        item = self.output[at]
        if arguments:
            item["_text"].append(arguments)
            out.append(self._event("response.function_call_arguments.delta", item_id=item["id"], output_index=at,
                                   delta=arguments))
        return out

    def _final(self, at: int) -> dict[str, Any]:
        item = {k: v for k, v in self.output[at].items() if k != "_text"}
        text = "".join(self.output[at]["_text"])
        if item["type"] == "message":
            return _message_item(item["id"], text, "completed")
        return {**item, "arguments": text, "status": "completed"}

    def _close(self, at: int) -> list[bytes]:
        self.closed.add(at)
        item = self._final(at)
        if item["type"] == "message":
            part = item["content"][0]
            return [self._event("response.output_text.done", item_id=item["id"], output_index=at, content_index=0,
                                text=part["text"], logprobs=[]),
                    self._event("response.content_part.done", item_id=item["id"], output_index=at, content_index=0,
                                part=part),
                    self._event("response.output_item.done", output_index=at, item=item)]
        return [self._event("response.function_call_arguments.done", item_id=item["id"], output_index=at,
                            name=item["name"], arguments=item["arguments"]),
                self._event("response.output_item.done", output_index=at, item=item)]

    def close(self, input_tokens: int, output_tokens: int) -> bytes:
        out = [] if self.started else self._start()
        for at in range(len(self.output)):
            if at not in self.closed:
                out += self._close(at)
        response = self.dialect._response(self.call, "completed", [self._final(at) for at in range(len(self.output))],
                                          self.deltas.finish_reason)
        response["usage"] = usage(input_tokens, output_tokens)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        out.append(self._event(kind, response=response))
        return b"".join(out)

    def fail(self, message: str, code: str) -> bytes:
        error = {"type": "server_error", "code": code, "message": message, "param": None}
        return self._event("error", code=code, message=message, param=None, error=error)
