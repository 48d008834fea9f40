"""One-time messages between a POST and the GET it redirects to (post/redirect/get).

Invariant: a flash is read at most once. `take` deletes the row and uses it only when
its own DELETE removed it, so two tabs reloading at once cannot both show it, and a
reload after that shows nothing (and, the POST being behind a redirect, creates nothing).

Why encrypted: the payload is a new API key's secret. It is sealed with AES-GCM under a
key derived from the session cookie value, which the database never sees (it stores the
cookie's SHA-256 only), so a copy of the table reveals no secret. A flash is dropped
after MAX_AGE, with its session, and at logout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import timedelta

from Crypto.Cipher import AES
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.portal.tables import portal_flash
from aigateway.sessions import session_hash
from aigateway.timeutil import as_utc, utcnow

MAX_AGE = timedelta(minutes=10)


def _key(cookie_token: str) -> bytes:
    return hmac.new(cookie_token.encode(), b"aigateway portal flash v1", hashlib.sha256).digest()


def seal(cookie_token: str, value: dict) -> bytes:
    nonce = secrets.token_bytes(12)
    cipher = AES.new(_key(cookie_token), AES.MODE_GCM, nonce=nonce)
    body, tag = cipher.encrypt_and_digest(json.dumps(value).encode())
    return nonce + body + tag


def unseal(cookie_token: str, payload: bytes) -> dict | None:
    if len(payload) < 28:
        return None
    cipher = AES.new(_key(cookie_token), AES.MODE_GCM, nonce=payload[:12])
    try:
        return json.loads(cipher.decrypt_and_verify(payload[12:-16], payload[-16:]))
    except ValueError:  # wrong key or tampered
        return None


async def put(engine: AsyncEngine, cookie_token: str, value: dict) -> None:
    """Store the session's flash (replacing one not yet shown)."""
    key = session_hash(cookie_token)
    payload = seal(cookie_token, value)
    async with engine.begin() as conn:
        await conn.execute(delete(portal_flash).where(portal_flash.c.session_hash == key))
        await conn.execute(portal_flash.insert().values(session_hash=key, payload=payload, created_at=utcnow()))


async def take(engine: AsyncEngine, cookie_token: str) -> dict | None:
    """The session's flash, removed as it is read; None when there is none (or it expired)."""
    key = session_hash(cookie_token)
    async with engine.begin() as conn:
        row = (await conn.execute(select(portal_flash.c.payload, portal_flash.c.created_at)
                                  .where(portal_flash.c.session_hash == key))).first()
        if row is None:
            return None
        removed = (await conn.execute(delete(portal_flash).where(portal_flash.c.session_hash == key))).rowcount
    if removed != 1 or utcnow() - as_utc(row.created_at) > MAX_AGE:
        return None
    return unseal(cookie_token, bytes(row.payload))


async def forget(engine: AsyncEngine, cookie_token: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(portal_flash).where(portal_flash.c.session_hash == session_hash(cookie_token)))


async def purge_expired(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(portal_flash).where(portal_flash.c.created_at < utcnow() - MAX_AGE))
