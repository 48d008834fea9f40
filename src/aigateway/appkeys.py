"""Typed keys for what the application shares between concerns.

Defined here, apart from app.py, so any concern can import them without
importing the whole application.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.config import Config

ENGINE = web.AppKey("engine", AsyncEngine)
CONFIG = web.AppKey("config", Config)
# `async def hook(app, periodic)` run once start-up is done (caches, wallet, engine ready).
STARTUP_HOOKS = web.AppKey("startup_hooks", list)


class DepositsPort(Protocol):
    """What the portal's Deposit tab needs from the deposits concern."""

    async def address_for(self, customer_id: int) -> str:
        """The customer's permanent deposit address (allocated on first call)."""

    async def overview(self, customer_id: int) -> dict:
        """{"address", "network", "rate" (TMT per USDT, str), "min_deposit" (USDT, str),
        "pending": [{"tx_id", "amount_usdt", "seen_at"}], "credited": [{"tx_id", "amount_usdt",
        "amount_tmt", "credited_at"}]}"""

    def watch_closely(self, customer_id: int) -> None:
        """The customer has the Deposit tab open: poll their address often for a while."""


# Set by the deposits concern when deposits are configured; absent = "not configured".
DEPOSITS = web.AppKey("deposits", DepositsPort)
