"""Posting to the append-only ledger.

`post_entry` runs inside the caller's transaction, so a deposit row (or any
other record) and its ledger entry commit together or not at all. The unique
`reference` makes posting idempotent: posting the same reference twice moves
the balance once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.accounts.tables import customers
from aigateway.billing.tables import ledger_entries
from aigateway.store.bulk import insert_ignoring_duplicates
from aigateway.store.metadata import utcnow

KINDS = frozenset({"credit", "charge", "deposit", "adjustment"})


class LedgerError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Posted:
    applied: bool  # False: the reference was already posted; nothing changed
    balance: int
    version: int


async def post_entry(
    conn: AsyncConnection,
    *,
    customer_id: int,
    amount: int,
    kind: str,
    reference: str,
    memo: str | None = None,
    allow_negative: bool = False,
) -> Posted:
    if kind not in KINDS:
        raise LedgerError(f"unknown ledger kind {kind!r}")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise LedgerError("ledger amounts are integer units")
    if not reference:
        raise LedgerError("a ledger entry needs a reference")
    stmt = (
        insert_ignoring_duplicates(conn, ledger_entries)
        .values(customer_id=customer_id, amount=amount, kind=kind, reference=reference, memo=memo,
                created_at=utcnow())
        .returning(ledger_entries.c.id)
    )
    inserted = (await conn.execute(stmt)).first()
    if inserted is None:
        row = (await conn.execute(
            select(customers.c.balance, customers.c.balance_version).where(customers.c.id == customer_id)
        )).one()
        return Posted(False, row.balance, row.balance_version)
    moved = await move_balance(conn, customer_id, amount)
    if moved is None:
        raise LedgerError(f"no customer with id {customer_id}")
    if moved.balance < 0 and amount < 0 and not allow_negative:
        raise LedgerError(f"this would leave customer {customer_id} with a negative balance")
    return Posted(True, moved.balance, moved.balance_version)


# Built once: constructing the statement costs more Python than running it (the group commit
# moves a balance per customer in every batch).
_MOVE_BALANCE = (
    update(customers)
    .where(customers.c.id == bindparam("move_customer"))
    .values(balance=customers.c.balance + bindparam("move_amount", type_=customers.c.balance.type),
            balance_version=customers.c.balance_version + 1)
    .returning(customers.c.balance, customers.c.balance_version)
)


async def move_balance(conn: AsyncConnection, customer_id: int, amount: int) -> Row[Any] | None:
    """Add `amount` to the balance and bump its version; returns (balance, balance_version) or None.

    Only ever called beside the ledger rows that account for the amount, in the same transaction.
    """
    return (await conn.execute(_MOVE_BALANCE, {"move_customer": customer_id, "move_amount": amount})).first()


async def ledger_sum(conn: AsyncConnection, customer_id: int) -> int:
    total = await conn.scalar(
        select(func.coalesce(func.sum(ledger_entries.c.amount), 0)).where(ledger_entries.c.customer_id == customer_id)
    )
    return int(total or 0)
