"""A fake price source on 127.0.0.1 serving both formats, and gateway configs that follow it."""

from __future__ import annotations

import asyncio
import copy
import json
import urllib.request

import pytest
from aiohttp import web

from aigateway.config import Config
from tests.conftest import gateway_config
from tests.support.servers import ServerThread

RATE = "3.50"  # the operator's USD->TMT rate in these tests (set through the config)
OR_PATH = "/or/api/v1/models"
LL_PATH = "/ll/model_prices_and_context_window.json"

# OpenRouter's model list format: USD per token as decimal strings.
OPENROUTER_DOC = {"data": [
    {"id": "vendor/chat", "name": "Vendor Chat", "context_length": 128000,
     "pricing": {"prompt": "0.0000025", "completion": "0.00001", "request": "0", "image": "0"},
     "top_provider": {"context_length": 128000, "max_completion_tokens": 16384, "is_moderated": False}},
    {"id": "vendor/long", "context_length": 32000,
     "pricing": {"prompt": "0.0000001", "completion": "0.0000004"},
     "top_provider": {"max_completion_tokens": 4096}},
    {"id": "vendor/variable", "pricing": {"prompt": "-1", "completion": "-1"}},
    {"id": "vendor/free", "pricing": {"prompt": "0", "completion": "0"}, "context_length": 8192},
]}

# LiteLLM's model price map format: JSON numbers (written with exponents, like the real file).
LITELLM_DOC = {
    "sample_spec": {"max_tokens": "set to max_output_tokens if provider specifies it",
                    "input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "mode": "one of: chat, embedding"},
    "ll-chat-up": {"max_tokens": 8192, "max_input_tokens": 131072, "max_output_tokens": 8192,
                   "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07, "litellm_provider": "x",
                   "mode": "chat"},
    "ll-embed-up": {"max_tokens": 8191, "max_input_tokens": 8191, "input_cost_per_token": 2e-08,
                    "output_cost_per_token": 0.0, "litellm_provider": "x", "mode": "embedding"},
    "image-model": {"input_cost_per_pixel": 1e-08, "mode": "image_generation"},
}


class FakeSource:
    """Serves whatever each path is set to: a JSON document, raw bytes, an HTTP status, or a delay."""

    def __init__(self) -> None:
        self.reset()
        self.server = ServerThread(self._app).start()
        self.url = self.server.url

    def reset(self) -> None:
        self.docs = {OR_PATH: copy.deepcopy(OPENROUTER_DOC), LL_PATH: copy.deepcopy(LITELLM_DOC)}
        self.raw: dict[str, tuple[int, bytes]] = {}
        self.delay: dict[str, float] = {}
        self.hits: dict[str, int] = {}

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        return app

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] = self.hits.get(path, 0) + 1
        if delay := self.delay.get(path):
            await asyncio.sleep(delay)
        if path in self.raw:
            status, body = self.raw[path]
            return web.Response(status=status, body=body, content_type="application/json")
        if path not in self.docs:
            return web.Response(status=404)
        return web.Response(body=json.dumps(self.docs[path]).encode(), content_type="application/json")

    def or_model(self, ident: str) -> dict:
        return next(m for m in self.docs[OR_PATH]["data"] if m["id"] == ident)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def price_server():
    server = FakeSource()
    yield server
    server.stop()


@pytest.fixture
def source(price_server) -> FakeSource:
    price_server.reset()
    return price_server


def pricing_config(upstream_url: str, db_url: str, source_url: str, **pricing) -> Config:
    """The core test config, plus models that follow the fake source (mock-long among them)."""
    data = gateway_config(upstream_url, db_url).model_dump()

    def tied(name, upstream, source, source_model, **extra):
        return {"name": name, "type": "chat", "price_source": source, "price_source_model": source_model,
                "routes": [{"provider": "mock", "model": upstream}], **extra}

    data["models"] = [m for m in data["models"] if m["name"] != "mock-long"] + [
        # limits from the config win over the source's
        tied("mock-long", "mock-chat-long", "or", "vendor/long", context_length=8192, max_output_tokens=1024),
        tied("or-chat", "mock-chat", "or", "vendor/chat"),
        tied("or-variable", "mock-chat", "or", "vendor/variable"),
        tied("ll-chat", "mock-chat", "ll", "ll-chat-up"),
        {"name": "ll-embed", "type": "embedding", "price_source": "ll", "price_source_model": "ll-embed-up",
         "routes": [{"provider": "mock", "model": "mock-embed"}]},
    ]
    data["pricing"] = {
        "fetch_interval": 0.3, "retry_interval": 0.3, "max_change_factor": "3", "markup": "0.20",
        "fx": {"USD": RATE},
        "sources": {
            "or": {"format": "openrouter", "url": source_url + OR_PATH, "timeout": 1},
            "ll": {"format": "litellm", "url": source_url + LL_PATH, "timeout": 1},
        },
        **pricing,
    }
    return Config.model_validate(data)


def models_of(server, key: str) -> dict:
    """GET /v1/models as a customer: {id: entry}."""
    req = urllib.request.Request(server.base_url + "/models", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return {m["id"]: m for m in json.load(resp)["data"]}


def input_price(server, key: str, model: str) -> str | None:
    entry = models_of(server, key).get(model)
    return entry["pricing"]["input"] if entry else None
