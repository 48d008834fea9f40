"""The operator's configuration file (TOML), validated at start-up.

Everything has an embedded default, so `aigateway serve` with no file at all
runs on SQLite in the current directory. Environment variables override the
file for the things that differ per deployment (database, Redis, port).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aigateway.money import MoneyError, to_units

DEFAULT_CONFIG_PATH = "aigateway.toml"


class Strict(BaseModel):
    """Base of every config section: an unknown key is an error (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid")


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = 8000
    # The URL customers use; shown in the portal's API docs.
    public_url: str | None = None
    # Where the demo mock upstream listens when `serve --demo` is used.
    demo_port: int = 8001

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class DatabaseConfig(Strict):
    url: str = "sqlite+aiosqlite:///./aigateway.db"


class RedisConfig(Strict):
    # When set, holds and balances are shared across replicas through Redis.
    url: str | None = None
    # Prefix of every key the wallet writes; replicas sharing balances use the same one.
    key_prefix: str = "aigw"
    # Connection pool: at most max_connections; a request waits up to pool_timeout seconds
    # for a free one (then 503), instead of failing at once.
    max_connections: int = Field(default=64, ge=1)
    pool_timeout: float = Field(default=2.0, gt=0)
    connect_timeout: float = Field(default=1.0, gt=0)
    socket_timeout: float = Field(default=2.0, gt=0)
    # Idle pooled connections are PINGed before reuse after this many seconds.
    health_check_interval: float = Field(default=10.0, ge=0)
    # After Redis lost its data, new requests get 503 this long (at least 3 s) while every
    # replica re-registers its open holds.
    recovery_seconds: float = Field(default=5.0, gt=0)
    # A replica whose heartbeat is older than this is presumed stopped (its open holds stop
    # counting when they expire; its uncommitted charges keep counting until it restarts).
    replica_ttl: float = Field(default=30.0, gt=0)


class BillingConfig(Strict):
    # false = "bare" mode (auth only): no holds, no charges, no usage records.
    enabled: bool = True
    # Group commit: usage records and ledger charges are written every flush_interval
    # seconds (or sooner when flush_max rows are waiting).
    flush_interval: float = 0.05
    flush_max: int = 500
    # A hold whose request never settles (crashed worker) is released after this.
    hold_ttl: float = 900.0
    # How long a stream whose client left is still read for its usage.
    disconnect_drain_seconds: float = 30.0
    # Output cap used for the hold when neither the request nor the model gives one.
    default_max_output_tokens: int = 4096
    # Local append-only spool of finished usage events (replayed at start; one process per
    # directory). Default: next to the SQLite database file ("<file>-spool"), else
    # ./aigateway-spool in the working directory.
    spool_dir: str | None = None
    # On shutdown, how long to keep trying to commit usage before leaving it in the spool.
    shutdown_grace: float = Field(default=30.0, ge=0)


class ProviderConfig(Strict):
    base_url: str
    # Name of the environment variable holding the upstream API key (never the key itself).
    api_key_env: str | None = None
    timeout: float = 600.0
    connect_timeout: float = 5.0
    # Longest silence while waiting for a response or between streamed bytes; a route
    # that stays silent this long before answering counts as failed and the next is tried.
    read_timeout: float = 300.0
    headers: dict[str, str] = Field(default_factory=dict)
    # The field that carries the output cap (the one the hold is sized for) when the
    # client sent neither; the fields a client did send are always rewritten to the cap.
    output_cap_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # How the provider's usage counts the prompt cache: "openai" (cached tokens included in the
    # prompt tokens) or "anthropic" (cache_read/cache_creation_input_tokens on top of them).
    usage_style: Literal["openai", "anthropic"] = "openai"

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class RouteConfig(Strict):
    provider: str
    model: str
    priority: int = 1  # lower is tried first
    weight: int = 1  # share of traffic among routes of the same priority


def _tmt_price(v: str | None) -> str | None:
    if v is not None:
        try:
            if to_units(v) < 0:
                raise ValueError("price must not be negative")
        except MoneyError as exc:
            raise ValueError(str(exc)) from exc
    return v


class TierConfig(Strict):
    """Prices for requests whose full input (cached tokens included) is above `above` tokens."""

    above: int = Field(gt=0)
    input_price: str
    output_price: str = "0"
    cached_input_price: str | None = None

    _prices = field_validator("input_price", "output_price", "cached_input_price")(_tmt_price)


class ModelConfig(Strict):
    name: str
    type: Literal["chat", "embedding"] = "chat"
    # TMT per 1M tokens as decimal strings; omitted = price comes from a price source.
    input_price: str | None = None
    output_price: str | None = None
    free: bool = False
    context_length: int | None = None
    max_output_tokens: int | None = None
    routes: list[RouteConfig]
    # Optional: follow an upstream price source (see [pricing]); id of the model there.
    price_source: str | None = None
    price_source_model: str | None = None
    # Answers' `model` field says `name` (false: the upstream's own model id, as it answered).
    rewrite_model: bool = True
    # Finer prices by hand (TMT as decimal strings; optional, see the README's billing rules):
    # per 1M tokens for cache reads/writes and reasoning, per request and per input image for the others.
    cached_input_price: str | None = None
    cache_write_price: str | None = None
    cache_write_long_price: str | None = None
    reasoning_price: str | None = None
    request_price: str | None = None
    image_price: str | None = None
    tiers: list[TierConfig] = Field(default_factory=list)

    _prices = field_validator("input_price", "output_price", "cached_input_price", "cache_write_price",
                              "cache_write_long_price", "reasoning_price", "request_price", "image_price")(_tmt_price)

    @model_validator(mode="after")
    def _routes_present(self) -> ModelConfig:
        if not self.routes:
            raise ValueError(f"model {self.name!r} needs at least one route")
        return self


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: list[ModelConfig] = Field(default_factory=list)
    # Sections owned by other concerns; validated by them.
    pricing: dict = Field(default_factory=dict)
    deposits: dict = Field(default_factory=dict)
    portal: dict = Field(default_factory=dict)
    smtp: dict = Field(default_factory=dict)  # outgoing e-mail (portal.mail): reset and verification links
    admin: dict = Field(default_factory=dict)  # the operator console's listener (console.settings)
    # Look for a local Ollama when no providers are configured.
    discover_ollama: bool = True
    ollama_url: str = "http://127.0.0.1:11434"

    @model_validator(mode="after")
    def _routes_name_providers(self) -> Config:
        names = set()
        for model in self.models:
            if model.name in names:
                raise ValueError(f"model {model.name!r} is listed twice")
            names.add(model.name)
            for route in model.routes:
                if route.provider not in self.providers:
                    raise ValueError(f"model {model.name!r} routes to unknown provider {route.provider!r}")
        return self


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read the TOML file (if any) and apply environment overrides."""
    data: dict = {}
    explicit = path is not None or "AIGATEWAY_CONFIG" in os.environ
    file = Path(path or os.environ.get("AIGATEWAY_CONFIG", DEFAULT_CONFIG_PATH))
    if file.exists():
        with file.open("rb") as fh:
            data = tomllib.load(fh)
    elif explicit:
        raise FileNotFoundError(f"config file not found: {file}")
    config = Config.model_validate(data)
    if url := os.environ.get("AIGATEWAY_DATABASE_URL"):
        config.database.url = url
    if url := os.environ.get("AIGATEWAY_REDIS_URL"):
        config.redis.url = url
    if port := os.environ.get("AIGATEWAY_PORT"):
        config.server.port = int(port)
    return config
