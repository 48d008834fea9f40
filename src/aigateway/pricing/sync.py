"""Apply the prices written in the config file (hand-set prices, `free = true`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.catalog import EXTRA_FIELDS, Tier, tiers_to_text
from aigateway.config import Config, ModelConfig
from aigateway.money import to_units
from aigateway.pricing.service import set_price


def config_extra(model: ModelConfig) -> dict:
    """The finer prices a model's config sets, in units, as price_versions columns."""
    extra = {name: None if getattr(model, name) is None else to_units(getattr(model, name))
             for name in EXTRA_FIELDS}
    tiers = tuple(Tier(t.above, to_units(t.input_price), to_units(t.output_price),
                       None if t.cached_input_price is None else to_units(t.cached_input_price))
                  for t in model.tiers)
    return {**extra, "tiers": tiers_to_text(tiers)}


async def apply_config_prices(engine: AsyncEngine, config: Config) -> list[str]:
    changed = []
    async with engine.begin() as conn:
        for model in config.models:
            extra = None
            if model.free:
                prices = (0, 0)
            elif model.input_price is not None:
                output = model.output_price if model.type == "chat" else "0"
                prices = (to_units(model.input_price), to_units(output or "0"))
                extra = config_extra(model) if model.type == "chat" else None
            else:
                continue
            if await set_price(conn, model.name, *prices, source="config", free=model.free, extra=extra):
                changed.append(model.name)
    return changed
