"""Login sessions, stored server-side.

Why a table rather than a signed cookie: logging out (or an operator disabling
a customer) ends the session for real and at once, no signing secret has to be
generated, shared between replicas and rotated, and the CSRF synchronizer token
lives next to the session it belongs to. The cookie holds 256 random bits; the
table holds their SHA-256 only. The cost is one indexed primary-key read per
portal page, which is nothing next to rendering it; the API never touches it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import customers
from aigateway.portal.tables import portal_flash, portal_sessions
from aigateway.store.metadata import utcnow


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def session_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    id_hash: str
    customer_id: int
    email: str
    csrf_token: str
    expires_at: datetime


async def create_session(engine: AsyncEngine, customer_id: int, ttl: timedelta) -> str:
    """Start a session (a fresh id at every login: no session fixation). Returns the cookie value."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(portal_sessions.insert().values(
            id_hash=session_hash(token), customer_id=customer_id, csrf_token=secrets.token_urlsafe(32),
            created_at=now, expires_at=now + ttl))
    return token


async def load_session(engine: AsyncEngine, token: str, ttl: timedelta) -> Session | None:
    """The live session for a cookie value, or None. Sliding expiry, written at most once a day."""
    if not token or len(token) > 100:
        return None
    id_hash = session_hash(token)
    query = (
        select(portal_sessions.c.customer_id, portal_sessions.c.csrf_token, portal_sessions.c.expires_at,
               customers.c.email, customers.c.status)
        .join(customers, customers.c.id == portal_sessions.c.customer_id)
        .where(portal_sessions.c.id_hash == id_hash)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.status != "active":
        return None
    now = utcnow()
    expires_at = aware(row.expires_at)
    if expires_at <= now:
        return None
    if expires_at - now < ttl - min(timedelta(days=1), ttl / 10):
        expires_at = now + ttl
        async with engine.begin() as conn:
            await conn.execute(update(portal_sessions).where(portal_sessions.c.id_hash == id_hash)
                               .values(expires_at=expires_at))
    return Session(id_hash, row.customer_id, row.email, row.csrf_token, expires_at)


async def end_session(engine: AsyncEngine, session: Session) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(portal_sessions).where(portal_sessions.c.id_hash == session.id_hash))
        await conn.execute(delete(portal_flash).where(portal_flash.c.session_hash == session.id_hash))


async def purge_expired(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(portal_sessions).where(portal_sessions.c.expires_at < utcnow()))
