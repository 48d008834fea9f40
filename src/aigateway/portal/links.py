"""One-time links sent by e-mail: password reset and e-mail verification.

A token is 256 random bits in the link; the table keeps only its SHA-256, the customer,
its purpose and the address it went to. It is single-use and expires (reset: 1 hour,
verify: 2 days): `use` spends it with one conditional UPDATE, so two clicks (or two
replicas) cannot both succeed. A new reset link cancels the older unused ones. A reset
link also stops working when the account's email changed since it was sent.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aigateway.accounts.tables import customers
from aigateway.portal.tables import portal_tokens, portal_verified_emails
from aigateway.store.bulk import insert_ignoring_duplicates
from aigateway.store.metadata import utcnow

LIFETIME = {"reset": timedelta(hours=1), "verify": timedelta(days=2)}


@dataclass(frozen=True, slots=True)
class Link:
    customer_id: int
    email: str
    purpose: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(conn: AsyncConnection, customer_id: int, email: str, purpose: str) -> str:
    """A new token for the link (returned once; only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    if purpose == "reset":  # only the newest reset link works
        await conn.execute(delete(portal_tokens).where(
            portal_tokens.c.customer_id == customer_id, portal_tokens.c.purpose == purpose,
            portal_tokens.c.used_at.is_(None)))
    await conn.execute(portal_tokens.insert().values(
        token_hash=token_hash(token), customer_id=customer_id, purpose=purpose, email=email,
        created_at=now, expires_at=now + LIFETIME[purpose]))
    return token


def _live(token: str, purpose: str):
    now = utcnow()
    return and_(portal_tokens.c.token_hash == token_hash(token), portal_tokens.c.purpose == purpose,
                portal_tokens.c.used_at.is_(None), portal_tokens.c.expires_at > now,
                customers.c.id == portal_tokens.c.customer_id, customers.c.email == portal_tokens.c.email,
                customers.c.status == "active")


async def peek(engine: AsyncEngine, token: str, purpose: str) -> Link | None:
    """The link's account if the token is still good (not spent: for showing the form)."""
    if not token or len(token) > 100:
        return None
    async with engine.connect() as conn:
        row = (await conn.execute(select(portal_tokens.c.customer_id, portal_tokens.c.email)
                                  .where(_live(token, purpose)))).first()
    return Link(row.customer_id, row.email, purpose) if row else None


async def use(conn: AsyncConnection, token: str, purpose: str) -> Link | None:
    """Spend the token (in the caller's transaction, with what it unlocks); None if it is
    unknown, spent, expired, or the account's email changed."""
    if not token or len(token) > 100:
        return None
    link = (await conn.execute(select(portal_tokens.c.customer_id, portal_tokens.c.email)
                               .where(_live(token, purpose)))).first()
    if link is None:
        return None
    spent = await conn.execute(update(portal_tokens).where(
        portal_tokens.c.token_hash == token_hash(token), portal_tokens.c.used_at.is_(None))
        .values(used_at=utcnow()))
    if spent.rowcount != 1:  # another request spent it first
        return None
    await mark_verified(conn, link.customer_id, link.email)  # following any link proves the mailbox
    return Link(link.customer_id, link.email, purpose)


async def mark_verified(conn: AsyncConnection, customer_id: int, email: str) -> None:
    await conn.execute(insert_ignoring_duplicates(conn, portal_verified_emails).values(
        customer_id=customer_id, email=email, verified_at=utcnow()))


async def is_verified(conn: AsyncConnection, customer_id: int, email: str) -> bool:
    return (await conn.scalar(select(portal_verified_emails.c.customer_id).where(
        portal_verified_emails.c.customer_id == customer_id, portal_verified_emails.c.email == email))) is not None


async def purge_expired(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(portal_tokens).where(portal_tokens.c.expires_at < utcnow() - timedelta(days=1)))
