"""The parts a request passes through, built once per process and shared by the views."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from aigateway.accounts.keycache import KeyCache
from aigateway.billing.recorder import UsageRecorder
from aigateway.billing.wallet import Wallet
from aigateway.config import Config
from aigateway.catalog import Catalog
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


GATEWAY = web.AppKey("gateway", Gateway)
