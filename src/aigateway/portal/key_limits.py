"""The API Keys tab's limits: each key's spend this period against its cap, and the form that
sets a key's cap, rates, concurrency and expiry (the same limits `admin key limits` sets).

Saving bumps the key (keylimits.service.set_limits), so every gateway applies it within ~1 s.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from aigateway.accounts.tables import api_keys
from aigateway.appkeys import ENGINE
from aigateway.keylimits.service import get_limits, set_limits, spent_this_period
from aigateway.keylimits.values import PERIODS, KeyLimits
from aigateway.money import MoneyError, to_units
from aigateway.portal.base import key_id_of, not_found, redirect, require_session, translator
from aigateway.portal.formatting import parse_amount
from aigateway.portal.i18n import N_
from aigateway.timeutil import parse_utc

PERIOD_LABELS = {"day": N_("today"), "month": N_("this month"), "lifetime": N_("in total")}


async def limits_of(conn, key_ids: list[int]) -> dict[int, dict]:
    """key id -> the limits and this period's spend, for the key list."""
    views = {}
    for key_id in key_ids:
        limits = await get_limits(conn, key_id)
        views[key_id] = {"limits": limits, "spent": await spent_this_period(conn, limits),
                         "period_label": PERIOD_LABELS[limits.spend_period],
                         "expires": limits.expires_at.date().isoformat() if limits.expires_at else ""}
    return views


class FormError(ValueError):
    pass


def _count(form, name: str, _) -> int | None:
    text = str(form.get(name, "")).strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1 or int(text) > 10**9:
        raise FormError(_("Limits are whole numbers of at least 1; leave a field empty for no limit."))
    return int(text)


def parse_limits(key_id: int, form, _) -> KeyLimits:
    cap_text = str(form.get("spend_cap", "")).strip()
    try:
        cap = to_units(parse_amount(cap_text)) if cap_text else None
    except MoneyError:
        raise FormError(_("The spend cap is an amount in TMT, e.g. 5 or 2.50.")) from None
    if cap is not None and cap < 0:
        raise FormError(_("The spend cap is an amount in TMT, e.g. 5 or 2.50."))
    period = str(form.get("spend_period", "month"))
    if period not in PERIODS:
        period = "month"
    expires_text = str(form.get("expires", "")).strip()
    expires = None
    if expires_text:
        try:
            expires = parse_utc(expires_text)
        except ValueError:
            raise FormError(_("The expiry date is a day like 2030-12-31.")) from None
    return KeyLimits(key_id=key_id, spend_cap=cap, spend_period=period, rpm=_count(form, "rpm", _),
                     tpm=_count(form, "tpm", _), concurrency=_count(form, "concurrency", _), expires_at=expires)


async def save_limits_view(request: web.Request) -> web.Response:
    session = require_session(request)
    key_id = key_id_of(request)
    form = await request.post()
    _ = translator(request)
    async with request.app[ENGINE].begin() as conn:
        owner = await conn.scalar(select(api_keys.c.customer_id).where(
            api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)))
        if owner != session.customer_id:
            raise not_found()
        try:
            limits = parse_limits(key_id, form, _)
        except FormError as exc:
            from aigateway.portal.pages import keys_page

            return await keys_page(request, status=400, error=str(exc))
        await set_limits(conn, limits)
    return redirect("/keys?m=limits")
