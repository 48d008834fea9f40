"""Operator sessions, server-side (like the portal's, in their own table and cookie).

The cookie holds 256 random bits, the table their SHA-256. Sessions are absolute
(`session_hours` after log-in), not sliding: an operator logs in with TOTP again each day.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.console.operators import Operator, sha256
from aigateway.console.tables import operator_sessions, operators
from aigateway.portal.sessions import aware
from aigateway.store.metadata import utcnow


@dataclass(frozen=True, slots=True)
class OperatorSession:
    id_hash: str
    operator: Operator
    csrf_token: str
    expires_at: datetime


async def create_session(engine: AsyncEngine, operator_id: int, ttl: timedelta) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(operator_sessions.insert().values(
            id_hash=sha256(token), operator_id=operator_id, csrf_token=secrets.token_urlsafe(32),
            created_at=now, expires_at=now + ttl))
    return token


async def load_session(engine: AsyncEngine, token: str | None) -> OperatorSession | None:
    if not token or len(token) > 100:
        return None
    query = (select(operator_sessions.c.csrf_token, operator_sessions.c.expires_at, operators.c.id,
                    operators.c.email, operators.c.role, operators.c.status)
             .join(operators, operators.c.id == operator_sessions.c.operator_id)
             .where(operator_sessions.c.id_hash == sha256(token)))
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.status != "active" or aware(row.expires_at) <= utcnow():
        return None
    return OperatorSession(sha256(token), Operator(row.id, row.email, row.role), row.csrf_token,
                           aware(row.expires_at))


async def end_session(engine: AsyncEngine, id_hash: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(operator_sessions).where(operator_sessions.c.id_hash == id_hash))


async def purge_expired(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(operator_sessions).where(operator_sessions.c.expires_at < utcnow()))
