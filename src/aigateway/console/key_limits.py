"""A customer's key limits set from the console: parse the form, save, audit.

Invariant: the limits are written only by keylimits.service (`set_limits`,
`set_allowed_models`), the functions `aigateway admin key limits` and the portal call,
so every gateway applies them within about a second (they bump the key), and the audit
row (before -> after) is written in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.accounts.tables import api_keys
from aigateway.console import audit
from aigateway.console.catalog_admin import NAME, Invalid
from aigateway.keylimits.service import (
    get_allowed_models,
    get_limits,
    set_allowed_models,
    set_limits,
    spent_this_period,
)
from aigateway.keylimits.values import PERIODS, KeyLimits
from aigateway.money import MoneyError, format_tmt, to_units

MAX_COUNT = 10**9


@dataclass(frozen=True, slots=True)
class KeyLimitsView:
    key: object  # the api_keys row
    limits: KeyLimits
    allowed: list[str] | None
    spent: int


async def key_of(conn: AsyncConnection, customer_id: int, key_id: int):
    """The key row when it belongs to this customer, else None."""
    return (await conn.execute(select(api_keys).where(api_keys.c.id == key_id,
                                                      api_keys.c.customer_id == customer_id))).first()


async def view(conn: AsyncConnection, key) -> KeyLimitsView:
    limits = await get_limits(conn, key.id)
    return KeyLimitsView(key, limits, await get_allowed_models(conn, key.id),
                         await spent_this_period(conn, limits))


def _count(form: dict[str, str], name: str, errors: dict[str, str]) -> int | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_COUNT:
        errors[name] = "A whole number of at least 1, or empty for no limit."
        return None
    return int(text)


def parse(key_id: int, form: dict[str, str], known_models: set[str]) -> tuple[KeyLimits, list[str] | None]:
    """The limits and allowlist the form asks for; Invalid with every problem found."""
    errors: dict[str, str] = {}
    cap = None
    cap_text = form.get("spend_cap", "").strip().replace(",", ".")
    if cap_text:
        try:
            cap = to_units(cap_text)
            if cap < 0:
                raise MoneyError("negative")
        except (MoneyError, ValueError, ArithmeticError):
            errors["spend_cap"] = "An amount in TMT (e.g. 5 or 2.50), or empty for no cap."
            cap = None
    period = form.get("spend_period", "month")
    if period not in PERIODS:
        errors["spend_period"] = f"One of {', '.join(PERIODS)}."
    expires = None
    expires_text = form.get("expires", "").strip()
    if expires_text:
        try:
            expires = datetime.fromisoformat(expires_text)
            expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        except ValueError:
            errors["expires"] = "A day like 2030-12-31 (the key stops at 00:00 UTC), or empty for never."
    allowed: list[str] | None = None
    names = list(dict.fromkeys(form.get("models", "").replace(",", " ").split()))
    if names:
        bad = [n for n in names if not NAME.match(n)]
        unknown = sorted(set(names) - known_models - set(bad))
        if bad:
            errors["models"] = f"Not a model name: {', '.join(bad[:5])}."
        elif unknown:
            errors["models"] = f"Not in the catalog: {', '.join(unknown[:5])}."
        allowed = names
    limits = KeyLimits(key_id=key_id, spend_cap=cap, spend_period=period if period in PERIODS else "month",
                       rpm=_count(form, "rpm", errors), tpm=_count(form, "tpm", errors),
                       concurrency=_count(form, "concurrency", errors), expires_at=expires)
    if errors:
        raise Invalid(errors)
    return limits, allowed


async def summaries(conn: AsyncConnection, keys: Sequence[Any]) -> dict[int, str]:
    """key id -> a one-line summary of its limits for the customer page ("none" when it has none)."""
    out = {}
    for key in keys:
        limits, allowed = await get_limits(conn, key.id), await get_allowed_models(conn, key.id)
        parts = []
        if limits.spend_cap is not None:
            parts.append(f"{format_tmt(limits.spend_cap)} TMT/{limits.spend_period}")
        parts += [f"{value} {unit}" for value, unit in ((limits.rpm, "rpm"), (limits.tpm, "tpm"),
                                                         (limits.concurrency, "at once")) if value]
        if limits.expires_at is not None:
            parts.append(f"until {limits.expires_at.date().isoformat()}")
        if allowed is not None:
            parts.append(", ".join(allowed) if len(allowed) <= 3 else f"{len(allowed)} models")
        out[key.id] = " · ".join(parts) or "none"
    return out


def shown(limits: KeyLimits, allowed: list[str] | None) -> dict:
    """What the audit row records (and the page shows) of a key's limits."""
    return {"spend_cap": None if limits.spend_cap is None else format_tmt(limits.spend_cap),
            "spend_period": limits.spend_period, "rpm": limits.rpm, "tpm": limits.tpm,
            "concurrency": limits.concurrency,
            "expires": limits.expires_at.isoformat() if limits.expires_at else None,
            "models": "all" if allowed is None else allowed}


async def save(conn: AsyncConnection, *, actor: str, customer_id: int, key_id: int, form: dict[str, str],
               known_models: set[str]) -> None:
    """Replace the key's limits and allowlist with the form's; audited with before -> after."""
    key = await key_of(conn, customer_id, key_id)
    if key is None:
        raise Invalid({"key": "No such key for this customer."})
    limits, allowed = parse(key_id, form, known_models)
    old_limits, old_allowed = await get_limits(conn, key_id), await get_allowed_models(conn, key_id)
    before, after = shown(old_limits, old_allowed), shown(limits, allowed)
    if before == after:
        return
    await set_limits(conn, limits)
    if allowed != old_allowed:
        await set_allowed_models(conn, key_id, allowed)
    await audit.record(conn, actor=actor, action="key.limits", target=f"customer:{customer_id} key:{key_id}",
                       before={k: v for k, v in before.items() if after[k] != v},
                       after={k: v for k, v in after.items() if before[k] != v})
