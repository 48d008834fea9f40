"""`aigateway serve --demo`: a local mock upstream and mock models, clearly labelled.

Demo mode uses its own database file by default (aigateway-demo.db), so demo
customers, keys and balances never mix with a real deployment's.
"""

from __future__ import annotations

from aigateway.config import Config, ModelConfig, ProviderConfig, RouteConfig

DEMO_DATABASE_URL = "sqlite+aiosqlite:///./aigateway-demo.db"
DEMO_PROVIDER = "demo-mock"


def demo_config(config: Config, *, database_overridden: bool) -> Config:
    config = config.model_copy(deep=True)
    if not database_overridden:
        config.database.url = DEMO_DATABASE_URL
    config.providers[DEMO_PROVIDER] = ProviderConfig(base_url=f"http://127.0.0.1:{config.server.demo_port}/v1")
    config.models += [
        ModelConfig(name="mock-chat", type="chat", input_price="1.00", output_price="2.00",
                    context_length=8192, max_output_tokens=1024,
                    routes=[RouteConfig(provider=DEMO_PROVIDER, model="mock-chat")]),
        ModelConfig(name="mock-embed", type="embedding", input_price="0.10",
                    routes=[RouteConfig(provider=DEMO_PROVIDER, model="mock-embed")]),
    ]
    config.discover_ollama = False
    return Config.model_validate(config.model_dump())
