"""API key format: `gw_` + 43 url-safe base64 characters (32 random bytes, 256 bits).

Keys carry full entropy, so a single SHA-256 is the right hash: it is what
makes lookups O(1) without a slow KDF on every request, and a leaked table
cannot be brute-forced back into keys. Passwords (low entropy) use argon2id.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KEY_PREFIX = "gw_"


@dataclass(frozen=True, slots=True)
class NewKey:
    secret: str  # shown to the customer exactly once
    key_hash: str
    prefix: str
    last4: str

    @property
    def masked(self) -> str:
        return mask(self.prefix, self.last4)


def generate_key() -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(secret=secret, key_hash=hash_key(secret), prefix=secret[:7], last4=secret[-4:])


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_key(secret: str) -> bool:
    return secret.startswith(KEY_PREFIX) and 20 <= len(secret) <= 200


def mask(prefix: str, last4: str) -> str:
    return f"{prefix}…{last4}"
