"""Operator accounts: creation (CLI), enrolment (password + TOTP), log-in checks.

Invariants: an operator can log in only after enrolment proved they hold the TOTP
seed; every log-in needs the password AND a current TOTP code (or an unused recovery
code, which is then spent). A TOTP code is accepted at most once (`totp_last_step`
only moves forward, in the same UPDATE that accepts it), so a code seen over a
shoulder cannot be replayed within its 30 s window.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.accounts.service import AccountError, normalise_email
from aigateway.console.tables import operator_recovery_codes, operators
from aigateway.portal.passwords import check_strength, hash_password, verify_password
from aigateway.store.db import inserted_id
from aigateway.timeutil import as_utc, utcnow
from aigateway.twofactor import codes as codes_
from aigateway.twofactor import seeds
from aigateway.twofactor.codes import sha256
from aigateway.twofactor.codes import step_if_valid as _step_if_valid

ROLES = ("admin", "viewer")
ENROL_TTL = timedelta(hours=24)
RECOVERY_CODES = 10
ISSUER = "aigateway console"


class OperatorError(ValueError):
    """Refused by the operator rules; str() is safe to show."""


@dataclass(frozen=True, slots=True)
class Operator:
    id: int
    email: str
    role: str

    @property
    def can_change(self) -> bool:
        return self.role == "admin"


async def create_operator(conn: AsyncConnection, email: str, role: str) -> tuple[int, str]:
    """A new, not yet enrolled operator. Returns (id, enrolment token): shown once, valid 24 h."""
    if role not in ROLES:
        raise OperatorError(f"role must be one of {', '.join(ROLES)}")
    try:
        email = normalise_email(email)
    except AccountError as exc:
        raise OperatorError(str(exc)) from None
    if await conn.scalar(select(operators.c.id).where(operators.c.email == email)) is not None:
        raise OperatorError(f"an operator with email {email} already exists")
    token = secrets.token_urlsafe(32)
    result = await conn.execute(operators.insert().values(
        email=email, role=role, status="pending", totp_secret=seeds.new(),
        enrol_token_hash=sha256(token), enrol_expires_at=utcnow() + ENROL_TTL))
    return inserted_id(result), token


async def reissue_enrolment(conn: AsyncConnection, email: str) -> str:
    """A fresh enrolment link (lost phone): password, TOTP seed and recovery codes are replaced."""
    row = (await conn.execute(select(operators).where(operators.c.email == normalise_email(email)))).first()
    if row is None:
        raise OperatorError(f"no operator with email {email}")
    token = secrets.token_urlsafe(32)
    await conn.execute(update(operators).where(operators.c.id == row.id).values(
        status="pending", password_hash=None, totp_secret=seeds.new(), totp_last_step=0,
        enrol_token_hash=sha256(token), enrol_expires_at=utcnow() + ENROL_TTL))
    await conn.execute(operator_recovery_codes.delete().where(operator_recovery_codes.c.operator_id == row.id))
    return token


async def pending_by_token(conn: AsyncConnection, token: str):
    if not token or len(token) > 100:
        return None
    row = (await conn.execute(select(operators).where(operators.c.enrol_token_hash == sha256(token)))).first()
    if row is None or row.status != "pending" or as_utc(row.enrol_expires_at) < utcnow():
        return None
    return row


def seed_of(row) -> str | None:
    """The operator's TOTP seed in clear (to show at enrolment only); None when it cannot be read."""
    return seeds.reveal(row.totp_secret)


def provisioning_uri(row) -> str | None:
    seed = seed_of(row)
    return None if seed is None else codes_.provisioning_uri(seed, row.email, ISSUER)


async def _accept_totp(conn: AsyncConnection, row, code: str) -> bool:
    step = _step_if_valid(row.totp_secret, code, row.totp_last_step)
    if step is None:
        return False
    # Conditional: two simultaneous log-ins with the same code, only one moves the step.
    result = await conn.execute(update(operators).where(operators.c.id == row.id,
                                                        operators.c.totp_last_step < step)
                                .values(totp_last_step=step))
    return result.rowcount == 1


async def enrol(conn: AsyncConnection, token: str, password: str, code: str) -> list[str]:
    """Finish enrolment: set the password, prove the TOTP seed. Returns the recovery codes (shown once)."""
    row = await pending_by_token(conn, token)
    if row is None:
        raise OperatorError("This enrolment link is invalid, used or expired. Ask for a new one.")
    try:
        check_strength(password, row.email)
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    if not await _accept_totp(conn, row, code):
        raise OperatorError("That code is not right. Enter the 6-digit code your authenticator app shows now.")
    codes = codes_.new_recovery_codes(RECOVERY_CODES)
    await conn.execute(update(operators).where(operators.c.id == row.id).values(
        status="active", password_hash=await hash_password(password), enrol_token_hash=None, enrol_expires_at=None))
    await conn.execute(operator_recovery_codes.insert(), [
        {"code_hash": sha256(c), "operator_id": row.id} for c in codes])
    return codes


async def authenticate(conn: AsyncConnection, email: str, password: str, code: str) -> Operator | None:
    """The operator when password and second factor are both right, else None (no hint which failed)."""
    row = (await conn.execute(select(operators).where(operators.c.email == email.strip().lower()))).first()
    ok = await verify_password(row.password_hash if row else None, password)
    if not ok or row is None or row.status != "active":
        return None
    code = code.strip().replace(" ", "").lower()
    if len(code) == 6:
        if not await _accept_totp(conn, row, code):
            return None
    else:  # a recovery code: spent by the same UPDATE that accepts it
        spent = await conn.execute(update(operator_recovery_codes).where(
            operator_recovery_codes.c.code_hash == sha256(code),
            operator_recovery_codes.c.operator_id == row.id,
            operator_recovery_codes.c.used_at.is_(None)).values(used_at=utcnow()))
        if spent.rowcount != 1:
            return None
    return Operator(row.id, row.email, row.role)


async def list_operators(conn: AsyncConnection) -> Sequence[Row[*tuple[Any, ...]]]:
    return (await conn.execute(select(operators.c.id, operators.c.email, operators.c.role, operators.c.status,
                                      operators.c.created_at).order_by(operators.c.id))).all()
