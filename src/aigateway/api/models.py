"""GET /v1/models: OpenAI's list format, each entry extended with prices and type."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from aigateway.api import errors
from aigateway.api.call import authenticate
from aigateway.api.gateway import GATEWAY
from aigateway.catalog import Model, Price
from aigateway.money import format_tmt
from aigateway.timeutil import iso


def _tmt(units: int | None) -> str | None:
    return None if units is None else format_tmt(units)


def finer_prices(price: Price | None, chat: bool) -> dict[str, Any]:
    """The optional prices in TMT (null when not priced apart): per 1M tokens, per request, per image."""
    if price is None or not chat:
        return {"cached_input": None, "cache_write": None, "cache_write_long": None, "reasoning": None,
                "request": None, "image": None, "tiers": []}
    return {
        "cached_input": _tmt(price.cached_input_price), "cache_write": _tmt(price.cache_write_price),
        "cache_write_long": _tmt(price.cache_write_long_price), "reasoning": _tmt(price.reasoning_price),
        "request": _tmt(price.request_price), "image": _tmt(price.image_price),
        "tiers": [{"above_tokens": t.above, "input": format_tmt(t.input_price), "output": format_tmt(t.output_price),
                   "cached_input": _tmt(t.cached_input_price)} for t in price.tiers],
    }


def model_entry(model: Model) -> dict[str, Any]:
    price = model.price
    return {
        "id": model.name,
        "object": "model",
        "created": model.created,
        "owned_by": "aigateway",
        "type": model.type,
        "pricing": {
            "currency": "TMT",
            "unit": "1M tokens",
            "input": format_tmt(price.input_price) if price else None,
            "output": format_tmt(price.output_price) if price and model.type == "chat" else None,
            "free": bool(price and price.free),
            **finer_prices(price, model.type == "chat"),
        },
        "context_length": model.context_length,
        "max_output_tokens": model.max_output_tokens,
        "prices_updated_at": iso(model.price_updated_at),  # with its offset: SQLite hands back naive UTC
    }


async def list_models(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    key = await authenticate(gateway, request)
    data = [model_entry(m) for m in gateway.catalog.models.values() if m.servable and key.may_use(m.name)]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    key = await authenticate(gateway, request)
    name = request.match_info["model"]
    model = gateway.catalog.get(name)
    if model is None or not model.servable or not key.may_use(name):
        raise errors.model_not_found(name)
    return web.Response(body=orjson.dumps(model_entry(model)), content_type="application/json")
