"""The `[deposits]` section of the operator's config, validated here.

Only the account-level extended PUBLIC key is configured: the gateway can derive
deposit addresses but can never spend from them.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from aigateway.config import Strict
from aigateway.deposits.rates import RateError, effective_rate, parse_decimal, token_base_units
from aigateway.deposits.tron import AddressError, XpubError, address_hex, validate_xpub

Network = Literal["mainnet", "nile", "shasta"]

# TronGrid-compatible API endpoints per network (any compatible node can be configured).
DEFAULT_API_URLS: dict[str, str] = {
    "mainnet": "https://api.trongrid.io",
    "nile": "https://nile.trongrid.io",
    "shasta": "https://api.shasta.trongrid.io",
}
# Tether USD (TRC-20) on mainnet, and the test tokens commonly used as USDT on the testnets.
DEFAULT_USDT_CONTRACTS: dict[str, str] = {
    "mainnet": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
    "nile": "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf",
    "shasta": "TG3XXyExBkPp9nzdajDZsozEu4BkaSJozs",
}


class DepositsConfig(Strict):
    enabled: bool = True
    # Account-level extended public key of m/44'/195'/0' (xpub...). Never a private key.
    xpub: str
    network: Network = "mainnet"
    # TronGrid-compatible base URL; default: the public TronGrid endpoint of `network`.
    api_url: str | None = None
    # Name of the environment variable holding the TRON-PRO-API-KEY (never the key itself).
    api_key_env: str | None = "TRONGRID_API_KEY"
    # USDT contract per network; set one to override the default of that network.
    usdt_contracts: dict[str, str] = Field(default_factory=dict)
    usdt_decimals: int = 6
    # Deposits credit at the USD rate of `admin fx set` (the prices' rate history) minus
    # `spread`, a fraction kept by the operator. `rate` is only a fallback used while no USD
    # rate has ever been recorded; a different deposit rate is `admin deposits rate set`.
    rate: str | None = None
    spread: str = "0"
    # Smallest deposit credited, in USDT; smaller transfers are recorded but not credited.
    min_deposit: str = "1"
    # Polling: addresses whose Deposit tab was opened within `hot_window` seconds are polled
    # every `hot_interval`; every address every `all_interval`; seen-but-not-solid
    # transactions are re-checked every `pending_interval`.
    hot_interval: float = 10.0
    hot_window: float = 900.0
    all_interval: float = 600.0
    pending_interval: float = 10.0
    # A transaction seen but never solidified is given up after this long (rescan retries it).
    pending_expiry: float = 86400.0
    # Discovery re-reads this many seconds before an address's cursor, so nothing is skipped.
    cursor_overlap: float = 600.0
    # Also list transfers whose block is not yet confirmed, to show them as pending at once
    # (false: ask the API with only_confirmed=true). Crediting always waits for solidity.
    discover_unconfirmed: bool = True
    page_limit: int = 200
    max_pages: int = 20
    # Addresses polled per watcher pass, and the pass cadence.
    batch: int = 50
    tick: float = 1.0
    requests_per_second: float = 5.0
    http_timeout: float = 15.0
    # Back-off after 429/403/5xx/garbage: doubles from initial up to max seconds.
    backoff_initial: float = 2.0
    backoff_max: float = 300.0
    # Only one watcher is active at a time (a lease row in the database).
    lease_ttl: float = 30.0
    # A row that fails to process (an error specific to it, not an API outage) is retried after
    # `retry_initial` seconds, doubling up to `retry_max`, and parked as needs_review after
    # `max_failures` failures; it never holds up the other rows.
    retry_initial: float = 10.0
    retry_max: float = 3600.0
    max_failures: int = 6
    # Deposits above this many USDT wait for `admin deposits approve TX` (none: no ceiling).
    review_above: str | None = "10000"
    # Discovery follows the USDT contract's confirmed Transfer events (one cursor for all
    # addresses, cost independent of the number of customers) every `events_interval` seconds.
    # `events_overlap` extra seconds are re-read before the cursor (the cursor's own block is
    # always re-read; confirmed blocks arrive in order, so 0 is enough, and re-reading costs
    # pages at busy times). The per-address listing then only runs for addresses whose Deposit
    # tab is open, for `rescan`, and as a slow fallback (`fallback_batch` per follow).
    follow_events: bool = True
    events_interval: float = 3.0
    events_overlap: float = 0.0
    # With follow_events, at most this many cold addresses are listed per pass (the fallback),
    # so API calls per pass do not grow with the number of customers.
    fallback_batch: int = 1
    # Run the watcher inside `aigateway serve`; false when `aigateway deposits-watcher` runs apart.
    run_watcher: bool = True

    @field_validator("xpub")
    @classmethod
    def _xpub(cls, v: str) -> str:
        try:
            return validate_xpub(v.strip())
        except XpubError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("api_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError("api_url must be an http(s) URL")
        return v

    @field_validator("usdt_contracts")
    @classmethod
    def _contracts(cls, v: dict[str, str]) -> dict[str, str]:
        for network, address in v.items():
            if network not in DEFAULT_API_URLS:
                raise ValueError(f"unknown network {network!r} in usdt_contracts")
            try:
                address_hex(address)
            except AddressError as exc:
                raise ValueError(str(exc)) from exc
        return v

    @field_validator("review_above")
    @classmethod
    def _ceiling(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            if parse_decimal(v, "review_above") <= 0:
                raise ValueError("review_above must be positive")
        except RateError as exc:
            raise ValueError(str(exc)) from exc
        return str(v).strip()

    @field_validator("rate", "spread", "min_deposit")
    @classmethod
    def _decimal(cls, v: str | None, info) -> str | None:
        if v is None:
            return None
        try:
            parse_decimal(v, info.field_name)
        except RateError as exc:
            raise ValueError(str(exc)) from exc
        return str(v).strip()

    @model_validator(mode="after")
    def _ranges(self) -> DepositsConfig:
        if self.rate is not None and self.rate_decimal <= 0:
            raise ValueError("rate must be positive")
        if not Decimal(0) <= self.spread_decimal < Decimal(1):
            raise ValueError("spread is a fraction from 0 (none) to below 1, e.g. '0.02' for 2%")
        if not 0 <= self.usdt_decimals <= 30:
            raise ValueError("usdt_decimals out of range")
        try:
            if self.min_deposit_units <= 0:
                raise ValueError("min_deposit must be positive (zero-value transfers are never credited)")
        except RateError as exc:
            raise ValueError(str(exc)) from exc
        for name in ("hot_interval", "all_interval", "pending_interval", "tick", "requests_per_second",
                     "http_timeout", "backoff_initial", "backoff_max", "lease_ttl", "retry_initial", "retry_max",
                     "events_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.fallback_batch < 0 or self.events_overlap < 0:
            raise ValueError("fallback_batch and events_overlap must not be negative")
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if not 1 <= self.page_limit <= 200:
            raise ValueError("page_limit is 1 to 200 (the API's maximum)")
        return self

    # -- derived values ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.api_url or DEFAULT_API_URLS[self.network]

    @property
    def usdt_contract(self) -> str:
        return self.usdt_contracts.get(self.network) or DEFAULT_USDT_CONTRACTS[self.network]

    @property
    def usdt_contract_hex(self) -> str:
        return address_hex(self.usdt_contract)

    @property
    def rate_decimal(self) -> Decimal:
        """The fallback rate (see `rates.rate_in_force` for the one in force)."""
        return parse_decimal(self.rate or "0", "rate")

    @property
    def spread_decimal(self) -> Decimal:
        return parse_decimal(self.spread, "spread")

    @property
    def effective_rate(self) -> Decimal:
        return effective_rate(self.rate_decimal, self.spread_decimal)

    @property
    def min_deposit_units(self) -> int:
        return token_base_units(self.min_deposit, self.usdt_decimals, "min_deposit")

    @property
    def review_above_units(self) -> int | None:
        """The approval ceiling in token base units (None: no ceiling)."""
        if self.review_above is None:
            return None
        return token_base_units(self.review_above, self.usdt_decimals, "review_above")

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class DepositsConfigError(ValueError):
    """A bad `[deposits]` section, as ONE line that never contains a value from it."""


# Extended keys (xpub/xprv and their testnet/segwit kin) and long base58/hex runs: what a secret looks like.
_SECRETISH = re.compile(r"\b[xtyzuv](?:pub|prv)[1-9A-HJ-NP-Za-km-z]{8,}|[1-9A-HJ-NP-Za-km-z]{40,}|[0-9a-fA-F]{40,}")


def redact(text: str) -> str:
    """Hazard: library messages may quote the offending value (a private key pasted as xpub)."""
    return _SECRETISH.sub("[redacted]", text)


def describe(exc: ValidationError, section: str = "deposits") -> str:
    """`[section] field: message; ...` from the error's locations and messages, never its inputs."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(p) for p in err.get("loc", ())) or "section"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {redact(msg)}")
    return f"[{section}] " + "; ".join(parts)


def deposits_config(section: dict) -> DepositsConfig | None:
    """The validated section, or None when deposits are not configured (or disabled).
    Raises DepositsConfigError (one line, no secrets) when the section is wrong."""
    if not section:
        return None
    try:
        config = DepositsConfig.model_validate(section)
    except ValidationError as exc:
        raise DepositsConfigError(describe(exc)) from None
    return config if config.enabled else None
