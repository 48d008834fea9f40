"""Voucher codes people can read, type and dictate: `XXXX-XXXX-XXXX-XXXX-XXXX`.

Alphabet: Crockford's base32 (0-9 and A-Z without I, L, O, U), so no two
characters look alike; on entry case, dashes and spaces are ignored and the
look-alikes I/L -> 1 and O -> 0 are read as Crockford says.
19 random characters carry 95 bits (>= 80: unguessable); the 20th is a Luhn mod 32
check character, which catches every single mistyped character and every swap of
two neighbours except 0<->Z, so a typo is reported before the server looks anything up.
"""

from __future__ import annotations

import hashlib
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_N = len(ALPHABET)
RANDOM_CHARS = 19
LENGTH = RANDOM_CHARS + 1
GROUP = 4
ENTROPY_BITS = RANDOM_CHARS * 5
_LOOK_ALIKES = str.maketrans({"I": "1", "L": "1", "O": "0"})


class CodeError(ValueError):
    """Not a well-formed voucher code (wrong length, a foreign character, or a failed check)."""


def check_char(payload: str) -> str:
    """Luhn mod N over the payload (N = 32)."""
    factor, total = 2, 0
    for char in reversed(payload):
        addend = factor * _INDEX[char]
        factor = 1 if factor == 2 else 2
        total += addend // _N + addend % _N
    return ALPHABET[(_N - total % _N) % _N]


def generate() -> str:
    payload = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_CHARS))
    return group(payload + check_char(payload))


def group(code: str) -> str:
    return "-".join(code[i:i + GROUP] for i in range(0, len(code), GROUP))


def normalise(entered: str) -> str:
    """The 20 canonical characters of what a person typed; CodeError when it cannot be a code."""
    text = "".join(entered.split()).replace("-", "").upper().translate(_LOOK_ALIKES)
    if len(text) != LENGTH:
        raise CodeError(f"A voucher code has {LENGTH} characters (groups of {GROUP}); this one has {len(text)}.")
    bad = sorted({c for c in text if c not in _INDEX})
    if bad:
        raise CodeError(f"A voucher code has no {', '.join(bad)}.")
    if check_char(text[:-1]) != text[-1]:
        raise CodeError("This code has a typo: please check every character.")
    return text


def code_hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()
