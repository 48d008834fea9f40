"""Providers and models defined from the console: validation, storage, audit, test call.

Invariants: a change is validated before it is written and is written with its audit row
in one transaction (console.audit); a provider key typed in the console is stored only
encrypted (providers.secrets) and is never shown, logged or put in an audit row again
(the audit row says "stored secret" / "env:NAME"). Names the config file defines are
read-only here: the config file wins (aigateway.catalog skips a clashing row).
Every replica's catalog picks the rows up on its next refresh: no restart. A model's price
is either set by hand here (a price version, source "console") or follows a config price
source with its own optional markup (catalog_models.price_source/markup), which the
scheduled fetch applies to every replica like a config model's price.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.console import audit
from aigateway.money import to_units
from aigateway.pricing import service as pricing
from aigateway.pricing.rules import limits_problem
from aigateway.providers import secrets
from aigateway.providers.routes import Route
from aigateway.providers.tables import catalog_models, catalog_providers
from aigateway.providers.upstream import RouteFailed, UpstreamClient
from aigateway.store.metadata import utcnow

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,199}$")
TYPES = ("chat", "embedding")


class Invalid(Exception):
    """A form that cannot be saved; `errors` maps a field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class RouteSpec:
    provider: str
    model: str
    priority: int = 1
    weight: int = 1


def key_source(row) -> str:
    """What the console shows (and audits) about a provider's key: never the key itself."""
    if row is None:
        return "none"
    if row.api_key_enc:
        return "stored secret"
    return f"env:{row.api_key_env}" if row.api_key_env else "none"


async def provider_rows(conn: AsyncConnection) -> Sequence[Row[*tuple[Any, ...]]]:
    return (await conn.execute(select(catalog_providers).order_by(catalog_providers.c.name))).all()


async def model_rows(conn: AsyncConnection) -> Sequence[Row[*tuple[Any, ...]]]:
    return (await conn.execute(select(catalog_models).order_by(catalog_models.c.name))).all()


async def save_provider(conn: AsyncConnection, *, actor: str, name: str, base_url: str, api_key_env: str,
                        api_key: str, config_names: set[str]) -> None:
    """Add or change a provider. An empty `api_key` keeps a stored secret; `api_key_env` replaces it."""
    errors: dict[str, str] = {}
    if not NAME.match(name):
        errors["name"] = "Letters, digits and . _ : / - only (at most 100)."
    elif name in config_names:
        errors["name"] = "The config file defines this provider; change it there."
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        errors["base_url"] = "An http(s) URL without query, e.g. https://api.example.com/v1"
    if api_key_env and not ENV_NAME.match(api_key_env):
        errors["api_key_env"] = "An environment variable name: A-Z, 0-9 and _."
    if api_key and api_key_env:
        errors["api_key"] = "Give either an environment variable or a key, not both."
    if api_key and not secrets.can_store():
        errors["api_key"] = f"Set {secrets.ENV} on every replica to store keys; or use an environment variable."
    if errors:
        raise Invalid(errors)
    before = (await conn.execute(select(catalog_providers).where(catalog_providers.c.name == name))).first()
    values = {"base_url": base_url.rstrip("/"), "updated_at": utcnow()}
    if api_key:
        values.update(api_key_enc=secrets.encrypt(api_key), api_key_env=None)
    elif api_key_env:
        values.update(api_key_env=api_key_env, api_key_enc=None)
    elif before is None:
        values.update(api_key_env=None, api_key_enc=None)
    if before is None:
        await conn.execute(catalog_providers.insert().values(name=name, **values))
    else:
        await conn.execute(catalog_providers.update().where(catalog_providers.c.name == name).values(**values))
    after = (await conn.execute(select(catalog_providers).where(catalog_providers.c.name == name))).one()
    await audit.record(conn, actor=actor, action="provider.save", target=name,
                       before=None if before is None else {"base_url": before.base_url, "key": key_source(before)},
                       after={"base_url": after.base_url, "key": key_source(after)})


def parse_routes(lines: str) -> list[RouteSpec]:
    """One route a line: `provider upstream-model [priority [weight]]`."""
    routes = []
    for number, line in enumerate(lines.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if len(words) < 2 or len(words) > 4 or not all(w.isdigit() for w in words[2:]):
            raise Invalid({"routes": f"Line {number}: write `provider model [priority [weight]]`."})
        priority, weight = (int(w) for w in (words[2:] + ["1", "1"])[:2])
        if not (0 <= priority <= 1000 and 1 <= weight <= 1000):
            raise Invalid({"routes": f"Line {number}: priority 0-1000, weight 1-1000."})
        routes.append(RouteSpec(words[0], words[1], priority, weight))
    return routes


def _optional_int(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValueError
    return int(text)


MAX_MARKUP = Decimal(100)  # +10,000 %: anything above is a typo, not a price


def parse_markup(text: str) -> Decimal | None:
    """ "0.20" or "20%" -> Decimal("0.20"); empty -> None. ValueError when not a sane markup."""
    text = text.strip().replace(",", ".")
    if not text:
        return None
    percent = text.endswith("%")
    try:
        value = Decimal(text.removesuffix("%").strip())
    except InvalidOperation:
        raise ValueError(text) from None
    if not value.is_finite():
        raise ValueError(text)
    value = value / 100 if percent else value
    if value <= -1 or value > MAX_MARKUP:
        raise ValueError(text)
    return value.normalize() if value != 0 else Decimal(0)


async def save_model(conn: AsyncConnection, *, actor: str, name: str, type_: str, routes_text: str,
                     context_length: str, max_output_tokens: str, input_price: str, output_price: str,
                     providers: set[str], config_names: set[str], price_source: str = "",
                     price_source_model: str = "", markup: str = "", sources: frozenset[str] = frozenset(),
                     ) -> bool:
    """Add or change a model with its routes, caps and its price: set by hand, or followed from a
    price source with an optional markup. True when the model follows a source (fetch soon)."""
    errors: dict[str, str] = {}
    if not NAME.match(name):
        errors["name"] = "Letters, digits and . _ : / - only (at most 100)."
    elif name in config_names:
        errors["name"] = "The config file defines this model; change it there."
    if type_ not in TYPES:
        errors["type"] = "chat or embedding."
    routes: list[RouteSpec] = []
    try:
        routes = parse_routes(routes_text)
        unknown = sorted({r.provider for r in routes} - providers)
        if not routes:
            errors["routes"] = "At least one route."
        elif unknown:
            errors["routes"] = f"Unknown provider: {', '.join(unknown)}."
    except Invalid as exc:
        errors.update(exc.errors)
    caps: tuple[int | None, int | None] = (None, None)
    try:
        caps = (_optional_int(context_length), _optional_int(max_output_tokens))
        problem = limits_problem(*caps) if any(c is not None for c in caps) else None
        if problem:
            errors["caps"] = problem
    except ValueError:
        errors["caps"] = "Whole numbers of tokens, or empty."
    prices = None
    if input_price.strip() or output_price.strip():
        try:
            prices = (to_units(input_price.strip()), to_units(output_price.strip()))
            if min(prices) < 0:
                raise ValueError
        except (ValueError, ArithmeticError):
            errors["price"] = "Both prices, in TMT per 1M tokens (e.g. 1.5), not negative."
    own_markup = None
    if price_source:
        if price_source not in sources:
            errors["price_source"] = (f"Not a [pricing.sources.*] section of the config: "
                                      f"{', '.join(sorted(sources)) or 'none is defined'}.")
        if prices is not None:
            errors["price"] = "Either set the price by hand or follow a price source, not both."
        if price_source_model and not NAME.match(price_source_model):
            errors["price_source_model"] = "The model's id in the source, e.g. vendor/model-name."
        try:
            own_markup = parse_markup(markup)
        except ValueError:
            errors["markup"] = "A fraction above -1 (0.20 = +20 %) or a percentage like 20%, or empty."
    elif price_source_model or markup.strip():
        errors["price_source"] = "Choose the price source the source model id and markup apply to."
    if errors:
        raise Invalid(errors)
    before = (await conn.execute(select(catalog_models).where(catalog_models.c.name == name))).first()
    values: dict[str, object] = {"type": type_, "routes": json.dumps([asdict(r) for r in routes]),
              "context_length": caps[0], "max_output_tokens": caps[1], "updated_at": utcnow(),
              "price_source": price_source or None, "price_source_model": price_source_model or None,
              "markup": None if own_markup is None else str(own_markup)}
    if before is None:
        await conn.execute(catalog_models.insert().values(name=name, **values))
    else:
        await conn.execute(catalog_models.update().where(catalog_models.c.name == name).values(**values))
    shown = ("type", "routes", "context_length", "max_output_tokens", "price_source", "price_source_model",
             "markup")
    after: dict[str, Any] = {k: values[k] for k in shown}
    old = None if before is None else {k: before._mapping[k] for k in shown}
    if prices is not None:
        price_before = await pricing.current_price(conn, name)
        if await pricing.set_price(conn, name, *prices, source="console", note=f"set by {actor}") is not None:
            old = {**(old or {}), "price": None if price_before is None else
                   [price_before.input_price, price_before.output_price]}
            after["price"] = list(prices)
    if old is not None:  # only what changed, so the audit line reads as a diff
        changed = {k for k in after if old.get(k) != after[k]}
        old, after = {k: old.get(k) for k in changed}, {k: after[k] for k in changed}
    await audit.record(conn, actor=actor, action="model.save", target=name, before=old, after=after)
    return bool(price_source)


def routed_by(model_rows_: Sequence[Any], provider: str) -> list[str]:
    """Names of the database models with a route through this provider."""
    users = []
    for row in model_rows_:
        try:
            specs = json.loads(row.routes)
        except ValueError:
            continue
        if any(isinstance(r, dict) and r.get("provider") == provider for r in specs):
            users.append(row.name)
    return users


async def delete_provider(conn: AsyncConnection, *, actor: str, name: str, config_names: set[str]) -> None:
    """Remove a console provider; refused while a model still routes to it (that model would lose the route)."""
    if name in config_names:
        raise Invalid({"delete": f"The config file defines provider {name}; remove it there."})
    row = (await conn.execute(select(catalog_providers).where(catalog_providers.c.name == name))).first()
    if row is None:
        raise Invalid({"delete": f"No provider {name} in the console's catalog."})
    users = routed_by(await model_rows(conn), name)
    if users:
        raise Invalid({"delete": f"Models still route to {name}: {', '.join(users)}. Change their routes or "
                                 "delete them first."})
    await conn.execute(catalog_providers.delete().where(catalog_providers.c.name == name))
    await audit.record(conn, actor=actor, action="provider.delete", target=name,
                       before={"base_url": row.base_url, "key": key_source(row)}, after=None)


async def delete_model(conn: AsyncConnection, *, actor: str, name: str, config_names: set[str]) -> None:
    """Remove a console model: every replica stops serving it on its next catalog refresh. Its prices,
    usage and ledger rows stay (history is never rewritten); adding the name again reuses its last price."""
    if name in config_names:
        raise Invalid({"delete": f"The config file defines model {name}; remove it there."})
    row = (await conn.execute(select(catalog_models).where(catalog_models.c.name == name))).first()
    if row is None:
        raise Invalid({"delete": f"No model {name} in the console's catalog."})
    await conn.execute(catalog_models.delete().where(catalog_models.c.name == name))
    await audit.record(conn, actor=actor, action="model.delete", target=name,
                       before={k: row._mapping[k] for k in ("type", "routes", "context_length", "max_output_tokens",
                                                            "price_source", "price_source_model", "markup")},
                       after=None)


@dataclass(frozen=True, slots=True)
class TestResult:
    ok: bool
    answer: str
    millis: int


async def test_route(upstream: UpstreamClient, route: Route) -> TestResult:
    """Send a 1-token chat request through this one route; the answer (or error) and latency."""
    body = orjson.dumps({"model": route.upstream_model, "max_tokens": 1,
                         "messages": [{"role": "user", "content": "Say OK"}]})
    started = time.perf_counter()
    try:
        response = await upstream.post(route, "/chat/completions", body)
        async with response:
            text = await response.text()
            status = response.status
    except RouteFailed as exc:
        # exc.reason names the route and the failure only, never the key.
        return TestResult(False, exc.reason, int((time.perf_counter() - started) * 1000))
    millis = int((time.perf_counter() - started) * 1000)
    if status != 200:
        return TestResult(False, f"HTTP {status}: {text[:300]}", millis)
    try:
        answer = orjson.loads(text)["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        return TestResult(False, f"not a chat completion: {text[:300]}", millis)
    return TestResult(True, answer, millis)
