"""Turn the config's providers and models into catalog entries with their routes."""

from __future__ import annotations

import logging
import time

from aigateway.catalog import Model
from aigateway.config import Config
from aigateway.providers.routes import Provider, Route

log = logging.getLogger(__name__)


def build_providers(config: Config) -> dict[str, Provider]:
    providers = {}
    for name, p in config.providers.items():
        if p.api_key_env and not p.api_key():
            log.warning("provider %s: environment variable %s is not set; calling it without a key",
                        name, p.api_key_env)
        providers[name] = Provider(
            name=name, base_url=p.base_url, api_key=p.api_key(), headers=tuple(p.headers.items()),
            connect_timeout=p.connect_timeout, read_timeout=p.read_timeout, timeout=p.timeout,
            output_cap_field=p.output_cap_field, usage_style=p.usage_style,
        )
    return providers


def build_models(config: Config, providers: dict[str, Provider]) -> list[Model]:
    now = int(time.time())
    return [
        Model(
            name=m.name, type=m.type, context_length=m.context_length, max_output_tokens=m.max_output_tokens,
            routes=[Route(providers[r.provider], r.model, r.priority, r.weight) for r in m.routes], created=now,
            rewrite_model=m.rewrite_model,
        )
        for m in config.models
    ]
