"""Apply the prices written in the config file (hand-set prices, `free = true`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.config import Config
from aigateway.money import to_units
from aigateway.pricing.service import set_price


async def apply_config_prices(engine: AsyncEngine, config: Config) -> list[str]:
    changed = []
    async with engine.begin() as conn:
        for model in config.models:
            if model.free:
                prices = (0, 0)
            elif model.input_price is not None:
                output = model.output_price if model.type == "chat" else "0"
                prices = (to_units(model.input_price), to_units(output or "0"))
            else:
                continue
            if await set_price(conn, model.name, *prices, source="config", free=model.free):
                changed.append(model.name)
    return changed
