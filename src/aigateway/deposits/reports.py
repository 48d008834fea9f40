"""Read-only queries behind `aigateway admin deposits list | pending | status`.

Only reads: every write to deposits goes through `DepositsService` (exactly-once crediting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.deposits.tables import deposit_addresses, deposit_leases, deposit_transactions, deposits


async def credited_deposits(conn: AsyncConnection, *, customer_id: int | None, limit: int) -> Sequence[Row]:
    """Deposits verified on chain, newest first."""
    query = select(deposits).order_by(deposits.c.id.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(deposits.c.customer_id == customer_id)
    return (await conn.execute(query)).all()


async def transactions_in_state(conn: AsyncConnection, status: str, *, customer_id: int | None,
                                limit: int) -> Sequence[Row]:
    """Seen transactions in one state (with their notes), newest first."""
    query = (select(deposit_transactions).where(deposit_transactions.c.status == status)
             .order_by(deposit_transactions.c.id.desc()).limit(limit))
    if customer_id is not None:
        query = query.where(deposit_transactions.c.customer_id == customer_id)
    return (await conn.execute(query)).all()


async def seen_transfers(conn: AsyncConnection, *, pending_only: bool, limit: int) -> Sequence[Row]:
    """Transfers seen on chain with their address, newest first (only pending ones unless told)."""
    query = (select(deposit_transactions, deposit_addresses.c.address)
             .join(deposit_addresses, deposit_addresses.c.id == deposit_transactions.c.address_id)
             .order_by(deposit_transactions.c.id.desc()).limit(limit))
    if pending_only:
        query = query.where(deposit_transactions.c.status == "pending")
    return (await conn.execute(query)).all()


@dataclass(frozen=True, slots=True)
class Counts:
    addresses: int
    pending: int
    credited: int
    needs_review: int
    lease_holder: str | None
    lease_expires_ms: int | None


async def counts(conn: AsyncConnection) -> Counts:
    """How many addresses, pending / parked transactions and credited deposits; the watcher lease."""
    def in_state(status: str):
        return select(func.count()).select_from(deposit_transactions).where(deposit_transactions.c.status == status)

    lease = (await conn.execute(select(deposit_leases))).first()
    return Counts(
        addresses=int(await conn.scalar(select(func.count()).select_from(deposit_addresses)) or 0),
        pending=int(await conn.scalar(in_state("pending")) or 0),
        credited=int(await conn.scalar(select(func.count()).select_from(deposits)
                                       .where(deposits.c.status == "credited")) or 0),
        needs_review=int(await conn.scalar(in_state("needs_review")) or 0),
        lease_holder=lease.holder if lease is not None else None,
        lease_expires_ms=lease.expires_ms if lease is not None else None,
    )
