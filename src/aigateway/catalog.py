"""The in-memory model catalog the hot path reads: routes, caps and current prices.

A neutral module: both `pricing` (writes prices) and `providers` (builds models
from the config) import it, so neither imports the other.

A `Price` is a frozen structure: input/output plus optional cache read, cache
write (short and long-lived), reasoning, per-request fee, per-image price and
long-context tiers. `Price.cost` bills counts by `money.request_cost`; the
hold is `Price.ceiling`, which prices every token at the highest rate the
request could reach (top reachable tier, no cache discount, reasoning at the
larger of output/reasoning, the fee and every image), so no honest combination
of counts can cost more than the hold.

Prices live in the database (`model_prices` -> `price_versions`). Every
process re-reads them every `refresh_interval` seconds (5 s by default), so a
price changed by any process or replica is in force everywhere within that
bound, without a restart. A request captures the `Price` object when it starts
and is charged at it, whatever changes while it runs.

The same refresh reads `model_limits` (context length / output cap reported by
a price source, checked by pricing.limits) and uses them for models whose config
sets none; a row outside the sane bounds is ignored here too.

It also reads the providers and models defined in the database (the operator
console's `catalog_providers` / `catalog_models`) and adds, changes or removes
those models, so a model added in the console is served by every replica within
one refresh, without a restart. The config file wins on a name clash: a database
model or provider whose name the config already uses is skipped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.money import request_cost
from aigateway.pricing.rules import limits_problem
from aigateway.pricing.tables import model_limits, model_prices, price_versions
from aigateway.providers import secrets
from aigateway.providers.routes import Provider, Route
from aigateway.providers.tables import catalog_models, catalog_providers
from aigateway.usage import Counts

log = logging.getLogger(__name__)

# Optional per-version price columns beside input/output (price_versions, migration 0009_pricing_fields).
EXTRA_FIELDS = ("cached_input_price", "cache_write_price", "cache_write_long_price", "reasoning_price",
                "request_price", "image_price")


@dataclass(frozen=True, slots=True)
class Tier:
    """Prices for a request whose FULL input (cached and written tokens included) is above `above` tokens."""

    above: int
    input_price: int
    output_price: int
    cached_input_price: int | None = None

    def as_json(self) -> dict:
        out = {"above": self.above, "input": self.input_price, "output": self.output_price}
        if self.cached_input_price is not None:
            out["cached_input"] = self.cached_input_price
        return out


def tiers_to_text(tiers: tuple[Tier, ...]) -> str | None:
    return json.dumps([t.as_json() for t in sorted(tiers, key=lambda t: t.above)]) if tiers else None


def tiers_from_text(text: str | None) -> tuple[Tier, ...]:
    if not text:
        return ()
    return tuple(sorted((Tier(int(t["above"]), int(t["input"]), int(t["output"]),
                              None if t.get("cached_input") is None else int(t["cached_input"]))
                         for t in json.loads(text)), key=lambda t: t.above))


@dataclass(frozen=True, slots=True)
class Price:
    version_id: int
    input_price: int  # units per 1M tokens
    output_price: int
    free: bool = False
    cached_input_price: int | None = None  # None: input_price
    cache_write_price: int | None = None  # None: input_price
    cache_write_long_price: int | None = None  # None: cache_write_price
    reasoning_price: int | None = None  # None: output_price
    request_price: int | None = None  # units per request
    image_price: int | None = None  # units per input image
    tiers: tuple[Tier, ...] = ()  # ascending by `above`

    @classmethod
    def from_row(cls, row, version_id: int | None = None) -> Price:
        """From a price_versions row (extra columns may be absent on a partial select)."""
        get = row._mapping.get
        return cls(version_id if version_id is not None else row.id, row.input_price, row.output_price,
                   bool(row.free), *(get(name) for name in EXTRA_FIELDS), tiers=tiers_from_text(get("tiers")))

    def stored(self) -> dict:
        """The extra columns of this price as written to price_versions."""
        return {**{name: getattr(self, name) for name in EXTRA_FIELDS}, "tiers": tiers_to_text(self.tiers)}

    def tier(self, full_input: int) -> Tier | None:
        """The tier in force for a request with this many input tokens (the highest one it is above)."""
        chosen = None
        for tier in self.tiers:
            if full_input > tier.above:
                chosen = tier
        return chosen

    def _terms(self, tier: Tier | None) -> dict:
        base_in = tier.input_price if tier else self.input_price
        cached = tier.cached_input_price if tier and tier.cached_input_price is not None else (
            self.cached_input_price if tier is None else None)
        return {"input_price": base_in, "output_price": tier.output_price if tier else self.output_price,
                "cached_price": cached, "cache_write_price": self.cache_write_price,
                "cache_write_long_price": self.cache_write_long_price, "reasoning_price": self.reasoning_price,
                "image_price": self.image_price or 0, "request_price": self.request_price or 0}

    def effective(self, full_input: int) -> tuple[int, ...]:
        """Every rate a request of this input length pays, defaults resolved (what the guardrail compares):
        (input, output, cached, cache write, long cache write, reasoning, request fee, image)."""
        t = self._terms(self.tier(full_input))
        write = t["input_price"] if t["cache_write_price"] is None else t["cache_write_price"]
        return (t["input_price"], t["output_price"],
                t["input_price"] if t["cached_price"] is None else t["cached_price"], write,
                write if t["cache_write_long_price"] is None else t["cache_write_long_price"],
                t["output_price"] if t["reasoning_price"] is None else t["reasoning_price"],
                t["request_price"], t["image_price"])

    def cost(self, counts: Counts) -> int:
        """Units charged for these counts: the tier chosen on the full input, one rounding."""
        if self.free:
            return 0
        terms = self._terms(self.tier(counts.input))
        return request_cost(counts.input, counts.output, terms.pop("input_price"), terms.pop("output_price"),
                            cached_tokens=counts.cached, cache_write_tokens=counts.cache_write,
                            cache_write_long_tokens=counts.cache_write_long, reasoning_tokens=counts.reasoning,
                            images=counts.images, requests=counts.requests, **terms)

    def ceiling(self, max_input: int, max_output: int, max_images: int = 0) -> int:
        """The hold: the most `cost` can be for at most these counts (and one request fee)."""
        if self.free:
            return 0
        worst_in = worst_out = 0
        for tier in (None, *(t for t in self.tiers if max_input > t.above)):
            t = self._terms(tier)
            write = t["input_price"] if t["cache_write_price"] is None else t["cache_write_price"]
            worst_in = max(worst_in, t["input_price"], t["cached_price"] or 0, write,
                           t["cache_write_long_price"] or 0)
            worst_out = max(worst_out, t["output_price"], t["reasoning_price"] or 0)
        return request_cost(max_input, max_output, worst_in, worst_out, images=max_images, requests=1,
                            image_price=self.image_price or 0, request_price=self.request_price or 0)


@dataclass(slots=True)
class Model:
    name: str
    type: str  # chat | embedding
    routes: list[Route]
    context_length: int | None = None
    max_output_tokens: int | None = None
    price: Price | None = None
    price_updated_at: datetime | None = None
    created: int = 0
    rewrite_model: bool = True  # answers carry `name`, not the upstream's model id

    @property
    def servable(self) -> bool:
        return self.price is not None


class Catalog:
    def __init__(self, models: list[Model], *, refresh_interval: float = 5.0,
                 providers: dict[str, Provider] | None = None) -> None:
        self.models: dict[str, Model] = {m.name: m for m in models}
        self.config_providers: dict[str, Provider] = dict(providers or {})
        self.db_models: set[str] = set()  # names of the models that came from the database
        self._db_rows: dict[str, tuple] = {}  # what each of those was built from (rebuilt only on change)
        self.refresh_interval = refresh_interval
        self.version = 0  # bumped when anything visible changes (for cached listings)
        # Limits each model had before any source-reported ones (from the config or discovery).
        self._own_limits: dict[str, tuple[int | None, int | None]] = {}

    def get(self, name: str) -> Model | None:
        return self.models.get(name)

    def add(self, model: Model) -> None:
        self.models[model.name] = model
        self.version += 1

    async def refresh(self, engine: AsyncEngine) -> None:
        query = select(
            model_prices.c.model, model_prices.c.updated_at, price_versions.c.id, price_versions.c.input_price,
            price_versions.c.output_price, price_versions.c.free,
            *(price_versions.c[name] for name in (*EXTRA_FIELDS, "tiers")),
        ).join(price_versions, price_versions.c.id == model_prices.c.price_version_id)
        async with engine.connect() as conn:
            db_providers = (await conn.execute(select(catalog_providers))).all()
            db_models = (await conn.execute(select(catalog_models))).all()
            rows = (await conn.execute(query)).all()
            limits = (await conn.execute(select(model_limits))).all()
        changed = self._apply_db_models(db_providers, db_models)
        changed = self._apply_limits(limits) or changed
        for row in rows:
            model = self.models.get(row.model)
            if model is None:
                continue
            price = Price.from_row(row)
            if model.price != price:
                model.price, model.price_updated_at = price, row.updated_at
                changed = True
        if changed:
            self.version += 1

    def _apply_db_models(self, provider_rows, model_rows) -> bool:
        providers = {r.name: r for r in provider_rows if r.name not in self.config_providers}
        wanted: dict[str, tuple] = {}
        for row in model_rows:
            if row.name in self.models and row.name not in self.db_models:
                continue  # the config file (or discovery) defines it: that one wins
            try:
                routes = [r for r in json.loads(row.routes) if isinstance(r, dict) and "provider" in r
                          and "model" in r]
            except ValueError:
                # Hazard: one bad row must not stop the refresh (prices and every other model ride on it).
                log.warning("catalog_models row %s: routes are not JSON; skipped", row.name)
                continue
            used = tuple(tuple(providers[r["provider"]])[:4] for r in routes if r["provider"] in providers)
            wanted[row.name] = (tuple(row)[:5], used)
        changed = False
        for name in self.db_models - wanted.keys():
            self.models.pop(name, None)
            self._db_rows.pop(name, None)
            changed = True
        for name, signature in wanted.items():
            if self._db_rows.get(name) == signature and name in self.models:
                continue
            row = next(r for r in model_rows if r.name == name)
            specs = [r for r in json.loads(row.routes) if isinstance(r, dict) and "provider" in r and "model" in r]
            model = Model(name=name, type=row.type, routes=self._routes(specs, providers),
                          context_length=row.context_length, max_output_tokens=row.max_output_tokens,
                          created=int(time.time()))
            old = self.models.get(name)
            if old is not None:
                model.price, model.price_updated_at = old.price, old.price_updated_at
            self._own_limits.pop(name, None)
            self.models[name] = model
            self._db_rows[name] = signature
            changed = True
        self.db_models = set(wanted)
        return changed

    def _routes(self, specs: list[dict], rows: dict) -> list[Route]:
        routes = []
        for spec in specs:
            provider = self.config_providers.get(spec["provider"]) or self._db_provider(rows.get(spec["provider"]))
            if provider is not None:
                routes.append(Route(provider, spec["model"], int(spec.get("priority", 1)),
                                    int(spec.get("weight", 1))))
        return routes

    @staticmethod
    def _db_provider(row) -> Provider | None:
        if row is None:
            return None
        key = None
        if row.api_key_enc:
            try:
                key = secrets.decrypt(row.api_key_enc)
            except secrets.SecretUnavailable as exc:
                log.warning("provider %s: %s; calling it without a key", row.name, exc)
        elif row.api_key_env:
            import os

            key = os.environ.get(row.api_key_env) or None
        return Provider(name=row.name, base_url=row.base_url.rstrip("/"), api_key=key)

    def _apply_limits(self, rows) -> bool:
        changed = False
        for row in rows:
            model = self.models.get(row.model)
            if model is None:
                continue
            own = self._own_limits.setdefault(model.name, (model.context_length, model.max_output_tokens))
            source = (row.context_length, row.max_output_tokens)
            if limits_problem(*source) is not None:
                # Hazard: holds are sized from these; a row written before the guardrails
                # existed (or by hand) is not trusted. The billing default applies instead.
                source = (None, None)
            context = own[0] if own[0] is not None else source[0]
            output = own[1] if own[1] is not None else source[1]
            if (model.context_length, model.max_output_tokens) != (context, output):
                model.context_length, model.max_output_tokens = context, output
                changed = True
        return changed
