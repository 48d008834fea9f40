"""Optional packages: which extra installs each, and one clear line when the config asks for a
feature whose package is missing.

The default install (`pip install aigateway`) runs the gateway, portal and console on SQLite on
one machine. PostgreSQL (`asyncpg`), Redis (`redis`) and USDT deposits (`bip-utils`) are extras
(`aigateway[postgres]`, `[redis]`, `[deposits]`, all three: `[all]`); `[test]` pulls them all in.
The code imports those packages only where the feature runs, so a config that does not ask for
a feature never needs its package.

Invariant: a config that asks for a feature without its package is refused before anything
starts (`check`, called by the CLI's config loader and by `create_app`), with one line naming
the extra to install, instead of an ImportError deep inside start-up or a request. Nothing is
imported here: the check looks for the package, it does not load it.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aigateway.config import Config


class MissingExtra(ValueError):
    """The config asks for a feature whose optional package is not installed."""


@dataclass(frozen=True, slots=True)
class Extra:
    module: str  # what the code imports
    package: str  # what pip installs
    extra: str  # the aigateway extra that brings it


POSTGRES = Extra("asyncpg", "asyncpg", "postgres")
REDIS = Extra("redis", "redis", "redis")
DEPOSITS = Extra("bip_utils", "bip-utils", "deposits")


def installed(module: str) -> bool:
    """True when `import module` can succeed (a module set to None in sys.modules cannot)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(extra: Extra, feature: str) -> None:
    """Raise MissingExtra (one line) unless the extra's package is installed."""
    if not installed(extra.module):
        raise MissingExtra(f"{feature} needs the optional package {extra.package}, which is not installed: "
                           f"install the extra with pip install 'aigateway[{extra.extra}]'")


def _uses_asyncpg(url: str) -> bool:
    scheme = url.split("://", 1)[0].lower()
    dialect, _, driver = scheme.partition("+")
    return dialect in ("postgresql", "postgres") and driver in ("", "asyncpg")


def _deposits_enabled(section: dict[str, object]) -> bool:
    return bool(section) and section.get("enabled", True) is not False


def check(config: Config) -> None:
    """Every optional package this config needs is installed, else MissingExtra for the first missing."""
    if _uses_asyncpg(config.database.url):
        require(POSTGRES, "a PostgreSQL database ([database] url or AIGATEWAY_DATABASE_URL)")
    if config.redis.url:
        require(REDIS, "Redis ([redis] url or AIGATEWAY_REDIS_URL)")
    if _deposits_enabled(config.deposits):
        require(DEPOSITS, "USDT deposits (the [deposits] section)")
