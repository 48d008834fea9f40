"""The customer side: "Redeem a voucher" on the portal's Deposit tab.

POST /deposit/voucher (CSRF-checked by the portal middleware like every portal form)
redeems and redirects (post/redirect/get) to GET /deposit/voucher, which shows the
outcome: the credit, or one message for any code that cannot be redeemed.
The result page finds a credit only among the visitor's own vouchers, so its URL
cannot be used to show someone a credit that did not happen.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jinja2
from aiohttp import web

from aigateway.appkeys import ENGINE, GATEWAY
from aigateway.portal import waits
from aigateway.portal.base import (
    PORTAL,
    client_ip,
    plural_translator,
    redirect,
    render,
    require_session,
    translator,
)
from aigateway.portal.i18n import N_
from aigateway.vouchers.service import REFUSED, Redeemed, redeem, redeemed_by

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
STATIC_URL = "/static/vouchers"

# Marked for the portal's catalogs (shown through the template's gettext); REFUSED is the
# service's own text, repeated here only so the extractor finds it (a test keeps them equal).
_REFUSED_MARK = N_("This code cannot be redeemed. It may be mistyped, already used, voided or expired. "
                   "Please check it, or ask the seller.")
TYPO = N_("This code has a typo or is incomplete: a voucher code has 20 characters (XXXX-XXXX-XXXX-XXXX-XXXX). "
        "Please check every character.")


def setup(app: web.Application) -> None:
    portal = app.get(PORTAL)
    if portal is None:  # the portal is not installed: nothing to plug into
        return
    for env in portal.envs.values():  # one environment per language
        loaders = [env.loader] if env.loader is not None else []
        env.loader = jinja2.ChoiceLoader([*loaders, jinja2.FileSystemLoader(TEMPLATES)])
    r = app.router
    routes = [r.add_get("/deposit/voucher", result_page), r.add_post("/deposit/voucher", redeem_view)]
    portal.resources.update(route.resource for route in routes)
    portal.resources.add(r.add_static(STATIC_URL, STATIC, append_version=False))


async def redeem_view(request: web.Request) -> web.Response:
    session = require_session(request)
    form = await request.post()
    code = str(form.get("code", ""))[:200]
    outcome = await redeem(request.app[ENGINE], session.customer_id, code, client_ip(request))
    if isinstance(outcome, Redeemed):
        wallet = request.app[GATEWAY].wallet
        if wallet is not None:
            try:
                await wallet.refresh()  # the header balance shows the credit at once
            except Exception:  # hazard: the credit is committed; never turn it into an error page
                log.warning("vouchers: wallet refresh after a credit failed; the periodic refresh will catch up",
                            exc_info=True)
        return redirect(f"/deposit/voucher?r={outcome.voucher_id}")
    if outcome.reason == "wait":
        return redirect(f"/deposit/voucher?e=wait&s={int(outcome.wait + 0.999)}")
    return redirect(f"/deposit/voucher?e={outcome.reason}")


async def result_page(request: web.Request) -> web.Response:
    session = require_session(request)
    credited, error = None, None
    ref = request.query.get("r", "")
    reason = request.query.get("e", "")
    if ref.isdigit() and len(ref) < 19:
        credited = await redeemed_by(request.app[ENGINE], session.customer_id, int(ref))
    if reason == "typo":
        error = TYPO
    elif reason == "wait":
        seconds = request.query.get("s", "")
        wait = float(seconds) if seconds.isdigit() and len(seconds) < 7 else 60.0
        error = waits.wait_text(waits.VOUCHER, wait, translator(request), plural_translator(request))
    elif reason or (ref and credited is None):
        error = REFUSED
    return await render(request, "voucher_result.html", tab="deposit", credited=credited, voucher_error=error)
