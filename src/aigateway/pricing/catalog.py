"""The in-memory model catalog the hot path reads: routes, caps and current prices.

Prices live in the database (`model_prices` -> `price_versions`). Every
process re-reads them every `refresh_interval` seconds (5 s by default), so a
price changed by any process or replica is in force everywhere within that
bound, without a restart. A request captures the `Price` object when it starts
and is charged at it, whatever changes while it runs.

The same refresh reads `model_limits` (context length / output cap reported by
a price source, checked by pricing.limits) and uses them for models whose config
sets none; a row outside the sane bounds is ignored here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.pricing.rules import limits_problem
from aigateway.pricing.tables import model_limits, model_prices, price_versions
from aigateway.providers.routes import Route


@dataclass(frozen=True, slots=True)
class Price:
    version_id: int
    input_price: int  # units per 1M tokens
    output_price: int
    free: bool = False


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
    def __init__(self, models: list[Model], *, refresh_interval: float = 5.0) -> None:
        self.models: dict[str, Model] = {m.name: m for m in models}
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
            model_prices.c.model, model_prices.c.updated_at, price_versions.c.id,
            price_versions.c.input_price, price_versions.c.output_price, price_versions.c.free,
        ).join(price_versions, price_versions.c.id == model_prices.c.price_version_id)
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            limits = (await conn.execute(select(model_limits))).all()
        changed = self._apply_limits(limits)
        for row in rows:
            model = self.models.get(row.model)
            if model is None:
                continue
            price = Price(row.id, row.input_price, row.output_price, row.free)
            if model.price != price:
                model.price, model.price_updated_at = price, row.updated_at
                changed = True
        if changed:
            self.version += 1

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
