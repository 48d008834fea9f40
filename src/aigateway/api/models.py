"""GET /v1/models: OpenAI's list format, each entry extended with prices and type."""

from __future__ import annotations

import orjson
from aiohttp import web

from aigateway.api import errors
from aigateway.api.call import authenticate
from aigateway.api.gateway import GATEWAY
from aigateway.money import format_tmt
from aigateway.catalog import Model


def model_entry(model: Model) -> dict:
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
        },
        "context_length": model.context_length,
        "max_output_tokens": model.max_output_tokens,
        "prices_updated_at": model.price_updated_at.isoformat() if model.price_updated_at else None,
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
