"""Zero-config start: offer the models of a local Ollama when no provider is configured."""

from __future__ import annotations

import logging

import aiohttp

from aigateway.catalog import Model
from aigateway.providers.routes import Provider, Route

log = logging.getLogger(__name__)


async def discover_ollama(base_url: str) -> list[Model]:
    """Models of an Ollama server at base_url (e.g. http://127.0.0.1:11434), or [] if none answers."""
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base_url.rstrip("/") + "/api/tags", timeout=aiohttp.ClientTimeout(total=1.5)) as r:
                r.raise_for_status()
                tags = await r.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return []
    provider = Provider(name="ollama", base_url=base_url.rstrip("/") + "/v1")
    models = []
    for entry in tags.get("models") or []:
        name = entry.get("name") or entry.get("model")
        if not isinstance(name, str):
            continue
        kind = "embedding" if "embed" in name else "chat"
        models.append(Model(name=name, type=kind, routes=[Route(provider, name)]))
    return models
