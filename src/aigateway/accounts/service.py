"""Customer and key operations shared by the CLI and the portal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.accounts.keys import NewKey, generate_key
from aigateway.accounts.tables import api_keys, customers
from aigateway.store.db import inserted_id
from aigateway.store.metadata import utcnow


class AccountError(ValueError):
    """A request the account rules refuse (unknown customer, duplicate email...)."""


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > 320 or " " in email:
        raise AccountError(f"not a valid email address: {email!r}")
    return email


async def create_customer(conn: AsyncConnection, email: str, password_hash: str | None = None) -> int:
    email = normalise_email(email)
    exists = await conn.scalar(select(customers.c.id).where(customers.c.email == email))
    if exists is not None:
        raise AccountError(f"an account with email {email} already exists")
    result = await conn.execute(customers.insert().values(email=email, password_hash=password_hash))
    return inserted_id(result)


async def get_customer(conn: AsyncConnection, customer_id: int) -> Row[*tuple[Any, ...]]:
    row = (await conn.execute(select(customers).where(customers.c.id == customer_id))).first()
    if row is None:
        raise AccountError(f"no customer with id {customer_id}")
    return row


async def find_customer(conn: AsyncConnection, ref: str) -> Row[*tuple[Any, ...]]:
    """Look a customer up by numeric id or by email."""
    if ref.isdigit():
        return await get_customer(conn, int(ref))
    row = (await conn.execute(select(customers).where(customers.c.email == normalise_email(ref)))).first()
    if row is None:
        raise AccountError(f"no customer with email {ref}")
    return row


async def create_key(
    conn: AsyncConnection, customer_id: int, name: str, allowed_models: list[str] | None = None
) -> tuple[int, NewKey]:
    name = name.strip()
    if not name or len(name) > 100:
        raise AccountError("a key needs a name of 1 to 100 characters")
    await get_customer(conn, customer_id)
    key = generate_key()
    result = await conn.execute(
        api_keys.insert().values(
            customer_id=customer_id,
            name=name,
            key_hash=key.key_hash,
            prefix=key.prefix,
            last4=key.last4,
            allowed_models=orjson.dumps(allowed_models).decode() if allowed_models is not None else None,
        )
    )
    return inserted_id(result), key


async def revoke_key(conn: AsyncConnection, key_id: int, customer_id: int | None = None) -> str:
    """Revoke a key; with customer_id, only if it belongs to that customer. Returns the key hash."""
    query = select(api_keys.c.key_hash, api_keys.c.revoked_at).where(api_keys.c.id == key_id)
    if customer_id is not None:
        query = query.where(api_keys.c.customer_id == customer_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise AccountError(f"no key with id {key_id}")
    if row.revoked_at is None:
        await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=utcnow()))
    key_hash: str = row.key_hash
    return key_hash


async def list_keys(conn: AsyncConnection, customer_id: int) -> Sequence[Row[*tuple[Any, ...]]]:
    query = select(api_keys).where(api_keys.c.customer_id == customer_id).order_by(api_keys.c.id.desc())
    return (await conn.execute(query)).all()


async def list_customers(conn: AsyncConnection) -> Sequence[Row[*tuple[Any, ...]]]:
    """Every customer (id, email, balance, status...), by id."""
    return (await conn.execute(select(customers).order_by(customers.c.id))).all()
