"""Operator sessions, server-side (see `aigateway.sessions`), in their own table and cookie.

Sessions are absolute (`session_hours` after log-in), not sliding: an operator logs in with
TOTP again each day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway import sessions
from aigateway.console.operators import Operator
from aigateway.console.tables import operator_sessions, operators
from aigateway.sessions import LoginSession, plausible_token, session_hash
from aigateway.timeutil import as_utc, utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorSession(LoginSession):
    operator: Operator


async def create_session(engine: AsyncEngine, operator_id: int, ttl: timedelta) -> str:
    return await sessions.create_session(engine, operator_sessions, ttl, operator_id=operator_id)


async def load_session(engine: AsyncEngine, token: str | None) -> OperatorSession | None:
    if not plausible_token(token):
        return None
    query = (select(operator_sessions.c.csrf_token, operator_sessions.c.expires_at, operators.c.id,
                    operators.c.email, operators.c.role, operators.c.status)
             .join(operators, operators.c.id == operator_sessions.c.operator_id)
             .where(operator_sessions.c.id_hash == session_hash(token)))
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.status != "active" or as_utc(row.expires_at) <= utcnow():
        return None
    return OperatorSession(id_hash=session_hash(token), operator=Operator(row.id, row.email, row.role),
                           csrf_token=row.csrf_token, expires_at=as_utc(row.expires_at))


async def end_session(engine: AsyncEngine, id_hash: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(operator_sessions).where(operator_sessions.c.id_hash == id_hash))


async def purge_expired(engine: AsyncEngine) -> None:
    await sessions.purge_expired(engine, operator_sessions)
