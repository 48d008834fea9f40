"""Optional TOTP two-factor for customers: enrolment, recovery codes, the pending log-in.

Invariants:
  - the factor is on only after the customer proved their app holds the secret (a code
    accepted at enrolment); recovery codes are created then, shown once, stored hashed;
  - each TOTP code is accepted once: `last_step` moves forward in the same conditional
    UPDATE that accepts it (two simultaneous uses of one code: only one wins);
  - a recovery code is spent by one conditional UPDATE (used_at IS NULL);
  - after a right password no session exists until the second factor: the browser gets a
    random pending-login token (its SHA-256 in `portal_pending_logins`, valid 5 min), which
    `finish_login` deletes in the statement that lets the log-in through (usable once).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aigateway.portal.tables import portal_pending_logins, portal_recovery_codes, portal_totp
from aigateway.timeutil import as_utc, utcnow
from aigateway.twofactor import codes, seeds

PENDING_TTL = timedelta(minutes=5)
ISSUER = "aigateway"


@dataclass(frozen=True, slots=True)
class TotpState:
    enabled: bool
    secret: str | None  # the pending secret while enrolling (None when enabled or not started)
    recovery_left: int


async def state(conn: AsyncConnection, customer_id: int) -> TotpState:
    row = (await conn.execute(select(portal_totp).where(portal_totp.c.customer_id == customer_id))).first()
    left = await conn.scalar(select(func.count()).select_from(portal_recovery_codes).where(
        portal_recovery_codes.c.customer_id == customer_id, portal_recovery_codes.c.used_at.is_(None)))
    if row is None:
        return TotpState(False, None, 0)
    enabled = row.enabled_at is not None
    return TotpState(enabled, None if enabled else seeds.reveal(row.secret), int(left or 0) if enabled else 0)


async def is_enabled(conn: AsyncConnection, customer_id: int) -> bool:
    return await conn.scalar(select(portal_totp.c.customer_id).where(
        portal_totp.c.customer_id == customer_id, portal_totp.c.enabled_at.is_not(None))) is not None


async def start_enrolment(conn: AsyncConnection, customer_id: int) -> None:
    """A fresh secret to scan; does nothing when the factor is already on."""
    row = (await conn.execute(select(portal_totp.c.enabled_at).where(
        portal_totp.c.customer_id == customer_id))).first()
    if row is not None and row.enabled_at is not None:
        return
    if row is None:
        await conn.execute(insert(portal_totp).values(customer_id=customer_id, secret=seeds.new(),
                                                      last_step=0, enabled_at=None, created_at=utcnow()))
    else:
        await conn.execute(update(portal_totp).where(portal_totp.c.customer_id == customer_id)
                           .values(secret=seeds.new(), last_step=0))


def provisioning_uri(secret: str, email: str, issuer: str = ISSUER) -> str:
    return codes.provisioning_uri(secret, email, issuer)


async def _accept_totp(conn: AsyncConnection, customer_id: int, code: str, *, enabled: bool) -> bool:
    row = (await conn.execute(select(portal_totp).where(portal_totp.c.customer_id == customer_id))).first()
    if row is None or (row.enabled_at is not None) != enabled:
        return False
    step = codes.step_if_valid(row.secret, code, row.last_step)
    if step is None:
        return False
    # Conditional: of two simultaneous uses of one code, only one moves the step.
    result = await conn.execute(update(portal_totp).where(portal_totp.c.customer_id == customer_id,
                                                          portal_totp.c.last_step < step)
                                .values(last_step=step))
    return result.rowcount == 1


async def confirm_enrolment(conn: AsyncConnection, customer_id: int, code: str) -> list[str] | None:
    """Turn the factor on if `code` is current; returns the recovery codes (shown once), else None."""
    if not await _accept_totp(conn, customer_id, code, enabled=False):
        return None
    await conn.execute(update(portal_totp).where(portal_totp.c.customer_id == customer_id)
                       .values(enabled_at=utcnow()))
    new = codes.new_recovery_codes()
    await conn.execute(delete(portal_recovery_codes).where(portal_recovery_codes.c.customer_id == customer_id))
    await conn.execute(insert(portal_recovery_codes), [
        {"code_hash": codes.sha256(c), "customer_id": customer_id, "used_at": None} for c in new])
    return new


async def verify(conn: AsyncConnection, customer_id: int, code: str) -> bool:
    """A current, unused 6-digit code or an unused recovery code (spent now)."""
    code = codes.normalise(code)
    if not code or len(code) > 32:
        return False
    if len(code) == 6 and code.isdigit():
        return await _accept_totp(conn, customer_id, code, enabled=True)
    spent = await conn.execute(update(portal_recovery_codes).where(
        portal_recovery_codes.c.code_hash == codes.sha256(code),
        portal_recovery_codes.c.customer_id == customer_id,
        portal_recovery_codes.c.used_at.is_(None)).values(used_at=utcnow()))
    return spent.rowcount == 1


async def disable(conn: AsyncConnection, customer_id: int) -> None:
    await conn.execute(delete(portal_recovery_codes).where(portal_recovery_codes.c.customer_id == customer_id))
    await conn.execute(delete(portal_totp).where(portal_totp.c.customer_id == customer_id))
    await conn.execute(delete(portal_pending_logins).where(portal_pending_logins.c.customer_id == customer_id))


# ------------------------------------------------------------------ the pending log-in

@dataclass(frozen=True, slots=True)
class PendingLogin:
    customer_id: int
    target: str


async def begin_login(conn: AsyncConnection, customer_id: int, target: str) -> str:
    """After a right password: the token for the second step's cookie (the table keeps its hash)."""
    token = secrets.token_urlsafe(32)
    await conn.execute(insert(portal_pending_logins).values(
        token_hash=codes.sha256(token), customer_id=customer_id, target=target,
        expires_at=utcnow() + PENDING_TTL))
    return token


async def pending(conn: AsyncConnection, token: str) -> PendingLogin | None:
    if not token or len(token) > 100:
        return None
    row = (await conn.execute(select(portal_pending_logins).where(
        portal_pending_logins.c.token_hash == codes.sha256(token)))).first()
    if row is None or as_utc(row.expires_at) <= utcnow():
        return None
    return PendingLogin(row.customer_id, row.target)


async def finish_login(conn: AsyncConnection, token: str) -> bool:
    """Use the pending log-in up: True for exactly one caller, while it has not expired."""
    result = await conn.execute(delete(portal_pending_logins).where(
        portal_pending_logins.c.token_hash == codes.sha256(token),
        portal_pending_logins.c.expires_at > utcnow()))
    return result.rowcount == 1


async def purge_expired(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(portal_pending_logins).where(portal_pending_logins.c.expires_at <= utcnow()))
