"""Server-side login sessions, shared by the customer portal and the operator console.

Why a table rather than a signed cookie: logging out (or an operator disabling an account)
ends the session for real and at once, no signing secret has to be generated, shared between
replicas and rotated, and the CSRF synchronizer token lives next to the session it belongs to.
The cookie holds 256 random bits; the table holds their SHA-256 only. The cost is one indexed
primary-key read per page, which is nothing next to rendering it; the API never touches it.
Each concern keeps its own table (`id_hash`, its owner column, `csrf_token`, `created_at`,
`expires_at`) and cookie, and its own expiry rule (the portal's slides, the console's is absolute).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeGuard

from sqlalchemy import Table, delete
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.timeutil import utcnow

MAX_TOKEN_LENGTH = 100  # a longer cookie value is not one of ours: refused before hashing


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginSession:
    """What every live session carries; each concern's session adds who it belongs to."""

    id_hash: str
    csrf_token: str
    expires_at: datetime  # aware, UTC


def session_hash(token: str) -> str:
    """What the table stores for a cookie value: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def plausible_token(token: str | None) -> TypeGuard[str]:
    return bool(token) and len(token or "") <= MAX_TOKEN_LENGTH


async def create_session(engine: AsyncEngine, table: Table, ttl: timedelta, **owner: object) -> str:
    """Start a session owned by `owner` (e.g. customer_id=7): a fresh id at every login, so no
    session fixation. Returns the cookie value."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(table.insert().values(
            id_hash=session_hash(token), csrf_token=secrets.token_urlsafe(32), created_at=now,
            expires_at=now + ttl, **owner))
    return token


async def purge_expired(engine: AsyncEngine, table: Table) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(table).where(table.c.expires_at < utcnow()))
