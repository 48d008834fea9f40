"""TOTP codes and recovery codes: the pure rules, shared by the console and the portal.

Invariant: a TOTP code is accepted only for a time step NEWER than the last one
accepted (`step_if_valid` returns that step; the caller stores it in the same
conditional UPDATE that accepts the code), so a code seen over a shoulder cannot be
replayed within its 30 s window. Recovery codes are stored only as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import secrets

import pyotp

from aigateway.store.metadata import utcnow

RECOVERY_CODES = 10


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, name: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=issuer)


def normalise(code: str) -> str:
    """What the user typed, without spaces and dashes, lower case (recovery codes are hex)."""
    return code.strip().replace(" ", "").replace("-", "").lower()


def step_if_valid(stored_secret: str, code: str, last_step: int) -> int | None:
    """The time step a 6-digit code belongs to (now +- 1 step), if it is newer than last_step.
    `stored_secret` is the seed as stored (plain or encrypted, see twofactor.seeds)."""
    from aigateway.twofactor.seeds import reveal

    code = normalise(code)
    if len(code) != 6 or not code.isdigit():
        return None
    secret = reveal(stored_secret)
    if secret is None:
        return None
    totp = pyotp.TOTP(secret)
    now = int(utcnow().timestamp()) // totp.interval
    for step in (now, now - 1, now + 1):
        if step > last_step and secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Single-use codes to show once (10 hex digits each); store only sha256() of each."""
    return [secrets.token_hex(5) for _ in range(count)]
