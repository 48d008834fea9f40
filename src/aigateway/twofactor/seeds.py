"""TOTP seeds at rest, for operators and customers alike: encrypted with aigateway.crypto.

Invariant: what a table stores in its seed column is either the plain base32 seed (written
before AIGATEWAY_SECRET_KEY was set, or while it is not set) or `crypto`'s "v1:..."
ciphertext; `reveal` reads both, so existing plain seeds keep working, and `seal_plain_rows`
(run at start-up) encrypts the plain ones as soon as the key is there. Without the key new
seeds are stored plain (said once at start-up): refusing them would lock every operator out
of a fresh install, and the key is the operator's choice to make, like for provider keys.
A sealed seed whose key is missing or wrong reveals as None: the code is simply not right
(and the log says why), never an error page, never a key in a log line.
"""

from __future__ import annotations

import logging

from sqlalchemy import Column, Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway import crypto
from aigateway.twofactor.codes import new_secret

log = logging.getLogger(__name__)


def stored(seed: str) -> str:
    """The form to store a seed in: encrypted when AIGATEWAY_SECRET_KEY is set, else the seed."""
    return crypto.encrypt(seed) if crypto.can_store() else seed


def new() -> str:
    """A fresh random seed, in the form to store."""
    return stored(new_secret())


def reveal(value: str) -> str | None:
    """The seed from its stored form; None when it is encrypted and the key is missing or wrong."""
    if not crypto.is_encrypted(value):
        return value
    try:
        return crypto.decrypt(value)
    except crypto.SecretUnavailable as exc:
        log.error("a TOTP seed cannot be read: %s; that account's codes are refused until the key is back", exc)
        return None


async def seal_plain_rows(conn: AsyncConnection, table: Table, key: Column, seed: Column) -> int:
    """Encrypt every plain seed of `table` (no-op without the key). Returns how many were sealed.

    Each row is rewritten only if it still holds the plain value read (a seed replaced in the
    meantime, e.g. by a new enrolment, is left to its writer, which seals it itself)."""
    if not crypto.can_store():
        return 0
    rows = (await conn.execute(select(key, seed).where(~seed.startswith(crypto.PREFIX, autoescape=True)))).all()
    sealed = 0
    for row_key, plain in rows:
        result = await conn.execute(update(table).where(key == row_key, seed == plain)
                                    .values({seed.name: crypto.encrypt(plain)}))
        sealed += result.rowcount
    return sealed


async def plain_count(conn: AsyncConnection, seed: Column) -> int:
    from sqlalchemy import func

    return int(await conn.scalar(select(func.count()).where(~seed.startswith(crypto.PREFIX, autoescape=True)))
               or 0)
