"""No providers configured: a local Ollama's models are offered, free until priced."""

import openai
from aiohttp import web

from aigateway.config import Config
from aigateway.demo.mock_upstream import create_mock_app
from tests.support.servers import ServerThread


def fake_ollama() -> web.Application:
    app = create_mock_app()  # Ollama speaks OpenAI's protocol under /v1

    async def tags(_request):
        return web.json_response({"models": [{"name": "llama3.2:1b", "model": "llama3.2:1b"},
                                             {"name": "nomic-embed-text:latest"}]})

    app.router.add_get("/api/tags", tags)
    return app


def test_local_ollama_models_are_offered_free(start_gateway, sqlite_url):
    ollama = ServerThread(fake_ollama).start()
    try:
        gateway = start_gateway(Config.model_validate({"database": {"url": sqlite_url}, "ollama_url": ollama.url}))
        cid, key = gateway.customer("ollama@example.com", credit=None)  # no money needed: free
        client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
        models = {m.id: m for m in client.models.list()}
        assert models["llama3.2:1b"].pricing["free"] is True
        assert models["nomic-embed-text:latest"].type == "embedding"
        reply = client.chat.completions.create(model="llama3.2:1b", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content
        assert gateway.balance(cid) == 0 and gateway.usage(cid)[0].cost == 0
    finally:
        ollama.stop()
