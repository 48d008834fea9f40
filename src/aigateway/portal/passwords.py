"""Password hashing (argon2id) and the password policy.

Hashing is deliberately slow and memory-hard, so it runs in a worker thread:
the event loop keeps serving API traffic while a login is verified.
"""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

MIN_LENGTH = 10
MAX_LENGTH = 256

# The most common choices, refused outright (lower-cased comparison).
_COMMON = frozenset("""
password password1 password12 password123 password1234 passw0rd p@ssw0rd p@ssword
1234567890 0123456789 12345678910 1234512345 1111111111 0000000000 9876543210 1q2w3e4r5t
qwertyuiop qwerty1234 qwerty12345 qwertyuiop1 asdfghjkl1 1qaz2wsx3edc zaq12wsx iloveyou12
letmein123 welcome123 admin12345 administrator changeme123 football12 baseball12 sunshine12
princess12 trustno1234 monkey1234 dragon1234 superman12 starwars12 abcdefghij abc1234567
""".split())


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("not a real password, only used to equalise timing")


def N_(text: str) -> str:  # marks a message for the portal's catalogs (see portal.i18n)
    return text


class WeakPassword(ValueError):
    """str() is the English message; `template` % `params` is what a translation fills in."""

    def __init__(self, template: str, **params) -> None:
        super().__init__(template % params)
        self.template, self.params = template, params

    def translated(self, gettext) -> str:
        return gettext(self.template) % self.params


def check_strength(password: str, email: str = "") -> None:
    """Raise WeakPassword with a message the customer can act on."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(N_("Password is too weak: use at least %(n)s characters."), n=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        raise WeakPassword(N_("Password is too long: use at most %(n)s characters."), n=MAX_LENGTH)
    lowered = password.lower()
    if lowered in _COMMON or len(set(lowered)) < 4:
        raise WeakPassword(N_("Password is too weak: it is too common or too repetitive. "
                              "Choose a less predictable one."))
    local = email.strip().lower().partition("@")[0]
    if len(local) >= 4 and local in lowered:
        raise WeakPassword(N_("Password is too weak: it must not contain your email address."))


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, _hasher.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`. With no stored hash (unknown email or a
    CLI-only customer) a dummy hash is checked anyway, so timing does not tell."""
    return await asyncio.get_running_loop().run_in_executor(None, _verify, stored, password)
