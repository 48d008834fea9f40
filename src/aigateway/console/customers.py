"""What the console does with a customer: find, look at, credit or adjust, disable, log out.

Money moves only through billing.ledger.post_entry (the CLI's path), in one transaction
with its audit row. Disabling sets `customers.status`: the key cache drops the customer's
keys on its next pass (every second) and the portal refuses their sessions at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.accounts.service import AccountError, get_customer
from aigateway.accounts.tables import api_keys, customers
from aigateway.billing.ledger import post_entry
from aigateway.billing.tables import ledger_entries, usage_records
from aigateway.console import audit
from aigateway.deposits.tables import deposit_addresses, deposit_transactions
from aigateway.money import format_tmt, to_units
from aigateway.portal.tables import portal_sessions
from aigateway.store.metadata import utcnow


class ConsoleError(ValueError):
    """A refused console action; str() is shown to the operator."""


async def search(conn: AsyncConnection, q: str, limit: int = 50) -> Sequence[Row[*tuple[Any, ...]]]:
    """By id, email (part of), deposit address, or API key prefix ("gw_AbCd")."""
    q = q.strip()
    query = select(customers.c.id, customers.c.email, customers.c.balance, customers.c.status,
                   customers.c.created_at).order_by(customers.c.id.desc()).limit(limit)
    if not q:
        return (await conn.execute(query)).all()
    like = "%" + q.lower().replace("\\", "").replace("%", "").replace("_", "\\_") + "%"
    conds: list[ColumnElement[bool]] = [func.lower(customers.c.email).like(like, escape="\\")]
    if q.isdigit():
        conds.append(customers.c.id == int(q))
    if len(q) >= 4:
        # A key as pasted ("gw_AbCd…wxyz", or the whole secret) starts with its stored prefix;
        # a shorter fragment is the start of one.
        typed = q.split("…")[0][:200]
        conds.append(customers.c.id.in_(select(api_keys.c.customer_id).where(or_(
            literal(typed).startswith(api_keys.c.prefix, autoescape=False),
            api_keys.c.prefix.like(typed.replace("%", "").replace("_", "\\_") + "%", escape="\\")))))
        conds.append(customers.c.id.in_(select(deposit_addresses.c.customer_id)
                                        .where(deposit_addresses.c.address == q)))
    return (await conn.execute(query.where(or_(*conds)))).all()


@dataclass(frozen=True, slots=True)
class CustomerView:
    customer: Row[*tuple[Any, ...]]
    keys: Sequence[Row[*tuple[Any, ...]]]
    usage: Sequence[Row[*tuple[Any, ...]]]  # per model, last 30 days
    ledger: Sequence[Row[*tuple[Any, ...]]]
    deposits: Sequence[Row[*tuple[Any, ...]]]
    address: str | None
    sessions: int


async def detail(conn: AsyncConnection, customer_id: int) -> CustomerView:
    try:
        row = await get_customer(conn, customer_id)
    except AccountError as exc:
        raise ConsoleError(str(exc)) from None
    keys = (await conn.execute(select(api_keys).where(api_keys.c.customer_id == customer_id)
                               .order_by(api_keys.c.id.desc()))).all()
    since = utcnow() - timedelta(days=30)
    usage = (await conn.execute(
        select(usage_records.c.model, func.count().label("requests"),
               func.sum(usage_records.c.input_tokens).label("input_tokens"),
               func.sum(usage_records.c.output_tokens).label("output_tokens"),
               func.sum(usage_records.c.cost).label("cost"))
        .where(usage_records.c.customer_id == customer_id, usage_records.c.created_at >= since)
        .group_by(usage_records.c.model).order_by(func.sum(usage_records.c.cost).desc()))).all()
    ledger = (await conn.execute(select(ledger_entries).where(ledger_entries.c.customer_id == customer_id)
                                 .order_by(ledger_entries.c.id.desc()).limit(50))).all()
    deps = (await conn.execute(
        select(deposit_transactions.c.tx_id, deposit_transactions.c.status, deposit_transactions.c.note,
               deposit_transactions.c.seen_at)
        .where(deposit_transactions.c.customer_id == customer_id)
        .order_by(deposit_transactions.c.id.desc()).limit(50))).all()
    address = await conn.scalar(select(deposit_addresses.c.address)
                                .where(deposit_addresses.c.customer_id == customer_id))
    sessions = await conn.scalar(select(func.count()).select_from(portal_sessions)
                                 .where(portal_sessions.c.customer_id == customer_id))
    return CustomerView(row, keys, usage, ledger, deps, address, int(sessions or 0))


async def move_money(conn: AsyncConnection, *, actor: str, customer_id: int, kind: str, amount: str,
                     reason: str) -> int:
    """Credit (positive) or adjust (signed) a balance with a reason; one ledger entry. Returns the balance."""
    reason = reason.strip()
    if not reason:
        raise ConsoleError("A reason is required.")
    if kind not in ("credit", "adjustment"):
        raise ConsoleError("Unknown kind.")
    try:
        units = to_units(amount.strip())
    except ValueError as exc:
        raise ConsoleError(f"Amount: {exc}") from None
    if units == 0 or (kind == "credit" and units < 0):
        raise ConsoleError("A credit must be positive; an adjustment must not be zero.")
    before = await conn.scalar(select(customers.c.balance).where(customers.c.id == customer_id))
    if before is None:
        raise ConsoleError(f"no customer with id {customer_id}")
    posted = await post_entry(conn, customer_id=customer_id, amount=units, kind=kind,
                              reference=f"console:{kind}:{os.urandom(8).hex()}", memo=reason)
    await audit.record(conn, actor=actor, action=f"customer.{kind}", target=f"customer:{customer_id}",
                       before={"balance": format_tmt(before)}, after={"balance": format_tmt(posted.balance)},
                       reason=reason)
    return posted.balance


async def set_status(conn: AsyncConnection, *, actor: str, customer_id: int, status: str, reason: str) -> None:
    """Disable ("disabled") or re-enable ("active"). Disabling also ends the portal sessions."""
    if status not in ("active", "disabled"):
        raise ConsoleError("Unknown status.")
    before = await conn.scalar(select(customers.c.status).where(customers.c.id == customer_id))
    if before is None:
        raise ConsoleError(f"no customer with id {customer_id}")
    if before == status:
        return
    # updated_at moves with it: that is what the key cache's refresher looks for.
    await conn.execute(update(customers).where(customers.c.id == customer_id)
                       .values(status=status, updated_at=utcnow()))
    if status == "disabled":
        await conn.execute(portal_sessions.delete().where(portal_sessions.c.customer_id == customer_id))
    await audit.record(conn, actor=actor, action="customer.disable" if status == "disabled" else "customer.enable",
                       target=f"customer:{customer_id}", before={"status": before}, after={"status": status},
                       reason=reason.strip() or None)


async def end_sessions(conn: AsyncConnection, *, actor: str, customer_id: int) -> int:
    ended = (await conn.execute(portal_sessions.delete().where(portal_sessions.c.customer_id == customer_id))).rowcount
    await audit.record(conn, actor=actor, action="customer.end_sessions", target=f"customer:{customer_id}",
                       before={"sessions": ended}, after={"sessions": 0})
    return ended
