"""Typed keys for what the application shares between concerns.

Defined here, apart from app.py, so any concern can import them without
importing the whole application. Hazard: this module sits below every concern,
so it imports none of them at run time (only for the type checker): a concern
that needs the gateway's parts reads `app[GATEWAY]` instead of importing `api`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.config import Config

if TYPE_CHECKING:
    from aigateway.api.gateway import Gateway

ENGINE = web.AppKey("engine", AsyncEngine)
CONFIG = web.AppKey("config", Config)
# The parts a request passes through (key cache, catalog, wallet, ...), set by the core start-up
# before any concern's start-up runs (see app.create_app).
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")


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
