"""The parts a request passes through, built once per process and shared by the views."""

from __future__ import annotations

from dataclasses import dataclass

from aigateway.accounts.keycache import KeyCache
from aigateway.appkeys import GATEWAY  # the key lives below every concern; re-exported for the API's views
from aigateway.billing.recorder import UsageRecorder
from aigateway.billing.wallet import Wallet
from aigateway.config import Config
from aigateway.keylimits.limiter import KeyLimiter
from aigateway.pricing.catalog import Catalog
from aigateway.providers.router import Router
from aigateway.providers.upstream import UpstreamClient


@dataclass(slots=True)
class Gateway:
    config: Config
    keys: KeyCache
    catalog: Catalog
    router: Router
    upstream: UpstreamClient
    wallet: Wallet | None  # None = billing disabled ("bare" profile)
    recorder: UsageRecorder | None
    key_limits: KeyLimiter | None = None  # per-key limits (keylimits.web sets it at start-up)


__all__ = ["GATEWAY", "Gateway"]


