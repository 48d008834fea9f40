"""What a dialect gives the chat call lifecycle, and helpers the dialects share.

Invariant: a dialect never touches money. It changes bodies and event shapes only; the
tokens it reports to the client are the counts the call is billed for (`usage` is passed
in by the lifecycle, which computed it for `Call.charge`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import orjson

from aigateway.api import errors
from aigateway.api.call import Call
from aigateway.api.sse import chat_events
from aigateway.api.streaming import StreamTransform

# A unary answer is translated in two steps: the shape first, inside the failover loop (an
# answer that cannot be translated is a route failure), then the usage, once it is known.
Finisher = Callable[[int, int], bytes]


class Dialect(Protocol):
    name: str

    def to_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """The client's body -> a chat completion body; raises errors.APIError (400) on bad input."""

    def answer(self, call: Call, completion: dict[str, Any]) -> Finisher:
        """A chat completion -> the answer, awaiting its usage; raises on an untranslatable answer."""

    def stream(self, call: Call) -> StreamTransform:
        """A transformer for this call's stream."""


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def require(condition: bool, message: str, param: str | None = None) -> None:
    if not condition:
        raise errors.bad_request(message, param=param)


def function_tools(tools: Any, accept: Callable[[dict[str, Any]], bool], refusal: str,
                   function_of: Callable[[dict[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
    """The client's `tools` array -> chat completion function tools.

    Every entry must be an object with a string `name` that `accept` takes (else 400 with
    "'tools[i]': " + `refusal`); `function_of` builds its chat `function` object.
    """
    require(isinstance(tools, list), "'tools' must be an array.", "tools")
    converted = []
    for i, tool in enumerate(tools):
        ok = isinstance(tool, dict) and isinstance(tool.get("name"), str) and accept(tool)
        require(ok, f"'tools[{i}]': {refusal}", "tools")
        converted.append({"type": "function", "function": function_of(tool)})
    return converted


def text_of(content: Any, param: str) -> str:
    """A string, or the text of a list of text parts (any `text` field), for content that is text only."""
    if isinstance(content, str):
        return content
    require(isinstance(content, list), f"'{param}' must be a string or an array of text parts.", param)
    texts = []
    for part in content:
        require(isinstance(part, dict) and isinstance(part.get("text"), str),
                f"'{param}' may hold only text parts here.", param)
        texts.append(part["text"])
    return "".join(texts)


def chat_message(completion: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The first choice's message and finish reason of a chat completion (the dialects answer with one)."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("a completion without choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise ValueError("a choice without a message")
    return message, choices[0].get("finish_reason")


def tool_calls(message: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(id, name, arguments) of a chat message's function tool calls."""
    out = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            arguments = function.get("arguments")
            out.append((str(call.get("id") or ""), function["name"],
                        arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode()))
    return out


class ChatDeltas:
    """Reads chat completion chunks into text pieces and tool-call pieces of the first choice."""

    def __init__(self) -> None:
        self.finish_reason: str | None = None

    def pieces(self, block: bytes) -> Iterator[tuple[Any, ...]]:
        """Yields ("text", text) and ("tool", index, id, name, arguments) in stream order."""
        for chunk in chat_events(block):
            choices = chunk.get("choices")
            for choice in choices if isinstance(choices, list) else []:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    if isinstance(delta.get("content"), str) and delta["content"]:
                        yield ("text", delta["content"])
                    calls = delta.get("tool_calls")
                    for call in calls if isinstance(calls, list) else []:
                        if not isinstance(call, dict):
                            continue
                        function = call.get("function")
                        if not isinstance(function, dict):
                            function = {}
                        arguments = function.get("arguments")
                        index = call.get("index")
                        yield ("tool", index if isinstance(index, int) else 0, call.get("id"), function.get("name"),
                               arguments if isinstance(arguments, str) else "")
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
