"""Prices and rate, deposits: pages over the pricing and deposits services (the CLI's).

Every change is written to the audit log in the same transaction as the change."""

from __future__ import annotations

import time

from aiohttp import web

from aigateway.appkeys import DEPOSITS
from aigateway.console import audit
from aigateway.console.web import MAIN, ConsoleRefusal, actor_of, engine_of, redirect, render


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/prices", prices_page)
    r.add_post("/prices/rate", set_rate)
    r.add_post(r"/prices/held/{vid:\d{1,12}}/{action:confirm|reject}", decide_price)
    r.add_get("/deposits", deposits_page)
    r.add_post("/deposits/review", review_deposit)
    r.add_post("/deposits/rescan", rescan)


async def prices_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    from aigateway.pricing import fx, service

    async with engine_of(request).connect() as conn:
        rate = await fx.current_rate_row(conn)
        history = await fx.rate_history(conn, limit=20)
        held = await service.pending_versions(conn)
        prices = await service.current_prices(conn)
        fetches = await _last_fetches(conn)
    notice = {"rate": "Rate changed.", "confirm": "Price change confirmed.",
              "reject": "Price change rejected."}.get(request.query.get("m", ""))
    return render(request, "prices.html", status=status, tab="prices", rate=rate, history=history, held=held,
                  prices=prices, fetches=fetches, error=error, notice=notice)


async def set_rate(request: web.Request) -> web.Response:
    from aigateway.pricing import fx

    form = await request.post()
    note = str(form.get("note", "")).strip()
    if not note:
        return await prices_page(request, "A reason is required.", 400)
    try:
        async with engine_of(request).begin() as conn:
            before = await fx.current_rate(conn)
            changed = await fx.set_rate(conn, "USD", str(form.get("rate", "")).strip(), source="console", note=note)
            if changed:
                await audit.record(conn, actor=actor_of(request), action="rate.set", target="USD",
                                   before={"rate": str(before) if before is not None else None},
                                   after={"rate": str(await fx.current_rate(conn))}, reason=note)
    except (ValueError, ArithmeticError) as exc:
        return await prices_page(request, f"Rate: {exc}", 400)
    return redirect("/prices?m=rate")


async def decide_price(request: web.Request) -> web.Response:
    from aigateway.money import format_tmt
    from aigateway.pricing import service

    vid, action = int(request.match_info["vid"]), request.match_info["action"]
    note = str((await request.post()).get("note", "")).strip() or None
    try:
        async with engine_of(request).begin() as conn:
            current = None
            row = (await service.confirm_version(conn, vid, note) if action == "confirm"
                   else await service.reject_version(conn, vid, note))
            current = row
            await audit.record(conn, actor=actor_of(request), action=f"price.{action}", target=f"model:{row.model}",
                               before={"status": "held"},
                               after={"status": "applied" if action == "confirm" else "rejected", "version": vid,
                                      "input": format_tmt(current.input_price),
                                      "output": format_tmt(current.output_price)},
                               reason=note)
    except service.PricingError as exc:
        return await prices_page(request, str(exc), 400)
    return redirect(f"/prices?m={action}")


async def _last_fetches(conn) -> list:
    """The newest finished fetch of each price source (what the CLI's `pricing status` shows)."""
    from sqlalchemy import func, select

    from aigateway.pricing.tables import price_fetches as f

    latest = select(func.max(f.c.id)).where(f.c.finished_at.is_not(None)).group_by(f.c.source)
    return (await conn.execute(select(f).where(f.c.id.in_(latest)).order_by(f.c.source))).all()


async def _watcher_state(conn) -> dict:
    from sqlalchemy import func, select

    from aigateway.deposits.tables import deposit_addresses as a
    from aigateway.deposits.tables import deposit_transactions as t

    last = await conn.scalar(select(func.max(a.c.last_polled_ms)))
    counts = dict((await conn.execute(select(t.c.status, func.count()).group_by(t.c.status))).all())
    return {"lag": max(0, int(time.time() - last / 1000)) if last else None, "counts": counts}


def _deposits_service(request: web.Request):
    return request.app[MAIN].get(DEPOSITS)


async def deposits_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    from sqlalchemy import select

    from aigateway.deposits.tables import deposit_transactions as t

    wanted = request.query.get("status", "")
    query = select(t).order_by(t.c.id.desc()).limit(200)
    if wanted:
        query = query.where(t.c.status == wanted[:20])
    async with engine_of(request).connect() as conn:
        rows = (await conn.execute(query)).all()
        watcher = await _watcher_state(conn)
    notice = {"approve": "Approved: credited on the watcher's next check.", "reject": "Rejected.",
              "rescan": "Address will be re-read on the next pass."}.get(request.query.get("m", ""))
    return render(request, "deposits.html", status=status, tab="deposits", rows=rows, wanted=wanted,
                  configured=_deposits_service(request) is not None, watcher=watcher, error=error, notice=notice)


async def review_deposit(request: web.Request) -> web.Response:
    form = await request.post()
    action, tx_id = str(form.get("action", "")), str(form.get("tx_id", ""))
    reason = str(form.get("reason", "")).strip()
    service = _deposits_service(request)
    if service is None:
        raise ConsoleRefusal(409, "Deposits are not configured on this gateway.")
    if action not in ("approve", "reject"):
        raise ConsoleRefusal(400, "Unknown action.")
    if not reason:
        return await deposits_page(request, "A reason is required.", 400)
    try:
        # The deposits service writes its own history row (deposit_history); the audit row follows it.
        await service.review(tx_id, action, actor_of(request), reason)
    except LookupError as exc:
        return await deposits_page(request, str(exc), 400)
    async with engine_of(request).begin() as conn:
        await audit.record(conn, actor=actor_of(request), action=f"deposit.{action}", target=f"tx:{tx_id}",
                           before={"status": "needs_review"},
                           after={"status": "pending" if action == "approve" else "rejected"}, reason=reason)
    return redirect(f"/deposits?m={action}")


async def rescan(request: web.Request) -> web.Response:
    form = await request.post()
    address = str(form.get("address", "")).strip()
    service = _deposits_service(request)
    if service is None:
        raise ConsoleRefusal(409, "Deposits are not configured on this gateway.")
    days = 7
    try:
        count = await service.rescan(address, int((time.time() - days * 86400) * 1000))
    except LookupError as exc:
        return await deposits_page(request, str(exc), 400)
    async with engine_of(request).begin() as conn:
        await audit.record(conn, actor=actor_of(request), action="deposit.rescan", target=f"address:{address}",
                           after={"since_days": days, "back_to_pending": count})
    return redirect("/deposits?m=rescan")
