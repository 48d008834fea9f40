"""The in-memory model catalog the hot path reads: routes, caps and current prices.

The values (`Model`, `Price`) live in `aigateway.catalog`, below both this concern and
`providers`; this loader reads pricing's tables and builds `providers`' routes, so it
sits here, above both (data flows: config and database -> catalog -> requests).

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
import os
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.catalog import EXTRA_FIELDS, Model, Price
from aigateway.pricing.rules import limits_problem
from aigateway.pricing.tables import model_limits, model_prices, price_versions
from aigateway.providers import secrets
from aigateway.providers.routes import Provider, Route
from aigateway.providers.tables import catalog_models, catalog_providers

log = logging.getLogger(__name__)


# The refresh's statements, built once: it runs every few seconds on the request loop, and building
# a statement (and its cache key) costs more of the loop's time than the query of a small table.
_PROVIDERS = select(catalog_providers)
_MODELS = select(catalog_models)
_LIMITS = select(model_limits)
_PRICES = select(
    model_prices.c.model, model_prices.c.updated_at, price_versions.c.id, price_versions.c.input_price,
    price_versions.c.output_price, price_versions.c.free,
    *(price_versions.c[name] for name in (*EXTRA_FIELDS, "tiers")),
).join(price_versions, price_versions.c.id == model_prices.c.price_version_id)


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
        async with engine.connect() as conn:
            db_providers = (await conn.execute(_PROVIDERS)).all()
            db_models = (await conn.execute(_MODELS)).all()
            rows = (await conn.execute(_PRICES)).all()
            limits = (await conn.execute(_LIMITS)).all()
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
