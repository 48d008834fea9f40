"""Customer login sessions (see `aigateway.sessions` for why they are server-side).

The portal's expiry slides: a session used within `ttl` stays alive, its expiry written at
most once a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway import sessions
from aigateway.accounts.tables import customers
from aigateway.portal.tables import portal_flash, portal_sessions
from aigateway.sessions import LoginSession, plausible_token, session_hash
from aigateway.timeutil import as_utc, utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class Session(LoginSession):
    customer_id: int
    email: str


async def create_session(engine: AsyncEngine, customer_id: int, ttl: timedelta) -> str:
    """Start a session (a fresh id at every login: no session fixation). Returns the cookie value."""
    return await sessions.create_session(engine, portal_sessions, ttl, customer_id=customer_id)


async def load_session(engine: AsyncEngine, token: str, ttl: timedelta) -> Session | None:
    """The live session for a cookie value, or None. Sliding expiry, written at most once a day."""
    if not plausible_token(token):
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
    expires_at = as_utc(row.expires_at)
    if expires_at <= now:
        return None
    if expires_at - now < ttl - min(timedelta(days=1), ttl / 10):
        expires_at = now + ttl
        async with engine.begin() as conn:
            await conn.execute(update(portal_sessions).where(portal_sessions.c.id_hash == id_hash)
                               .values(expires_at=expires_at))
    return Session(id_hash=id_hash, customer_id=row.customer_id, email=row.email, csrf_token=row.csrf_token,
                   expires_at=expires_at)


async def end_session(engine: AsyncEngine, session: Session) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(portal_sessions).where(portal_sessions.c.id_hash == session.id_hash))
        await conn.execute(delete(portal_flash).where(portal_flash.c.session_hash == session.id_hash))


async def purge_expired(engine: AsyncEngine) -> None:
    await sessions.purge_expired(engine, portal_sessions)
