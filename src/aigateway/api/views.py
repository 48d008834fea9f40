"""The endpoint handlers. Each runs one call: `begin`, then the upstream inside `async with call:`,
whose exit settles the call (api/call.py), whatever ends it."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from aigateway.api import call as calls
from aigateway.api.call import Call
from aigateway.api.dialects import anthropic
from aigateway.api.dialects.anthropic import AnthropicDialect
from aigateway.api.dialects.base import Dialect
from aigateway.api.dialects.responses import ResponsesDialect
from aigateway.api.errors import APIError
from aigateway.api.gateway import GATEWAY
from aigateway.api.receipts import wants_cost
from aigateway.api.streaming import relay_stream
from aigateway.api.tokens import count_chat_prompt, count_embedding_input, count_text_tokens
from aigateway.api.unary import answer_unary


def _estimate_chat(call: Call, payload: dict[str, Any] | None) -> tuple[int, int]:
    output = 0
    for choice in (payload or {}).get("choices") or []:
        message = (choice.get("message") or {}) if isinstance(choice, dict) else {}
        output += count_text_tokens(message.get("content") or "")
        if message.get("tool_calls"):
            output += count_text_tokens(orjson.dumps(message["tool_calls"]).decode())
    return count_chat_prompt(call.body.get("messages", [])), output


def _estimate_embeddings(call: Call, _payload: dict[str, Any] | None) -> tuple[int, int]:
    return count_embedding_input(call.body.get("input")), 0


async def _run(request: web.Request, endpoint: str, dialect: Dialect | None = None) -> web.StreamResponse:
    """One call; a `dialect` (api/dialects) translates another API's request and answer around it."""
    gateway = request.app[GATEWAY]
    call = await calls.begin(gateway, request, endpoint, dialect.to_chat if dialect else None)
    async with call:
        call.wants_cost = wants_cost(call.body)
        if call.stream:
            return await relay_stream(gateway, call, request, dialect.stream(call) if dialect else None)
        estimate = _estimate_chat if endpoint == "chat" else _estimate_embeddings
        return await answer_unary(gateway, call, estimate, dialect.answer if dialect else None)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _run(request, "chat")


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _run(request, "embeddings")


async def responses(request: web.Request) -> web.StreamResponse:
    return await _run(request, "chat", ResponsesDialect())


async def messages(request: web.Request) -> web.StreamResponse:
    """Anthropic's Messages API: every error on this route in Anthropic's shape."""
    try:
        anthropic.check_version(request)
        response = await _run(request, "chat", AnthropicDialect())
    except APIError as exc:
        return anthropic.error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        return anthropic.error_response(APIError(413, "The request body is too large."))
    if isinstance(response, web.Response) and response.status >= 400:  # an upstream's own refusal
        return anthropic.reshape_error(response)
    return response
