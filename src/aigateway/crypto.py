"""Secrets stored encrypted at rest (AES-256-GCM, pycryptodome): the one mechanism for
provider API keys typed in the console and TOTP seeds (operators' and customers').

The key comes from the environment variable AIGATEWAY_SECRET_KEY (any random string of
at least 16 characters; its SHA-256 is the AES key), never from the database, so a copy
of the database alone reveals no provider key and no TOTP seed. Every replica needs the
same value. Without it nothing new is encrypted: a provider key can then only come from
an environment variable (`can_store()` is False), and TOTP seeds are stored as they are
(twofactor.seeds; a warning says so at start-up). A value stored encrypted cannot be read
without the key: the caller treats it as unavailable, never as empty. Hazard: a
decrypted value must never reach a log, an error message or a page it does not belong to.
"""

from __future__ import annotations

import base64
import hashlib
import os

from Crypto.Cipher import AES

ENV = "AIGATEWAY_SECRET_KEY"
PREFIX = "v1:"


class SecretUnavailable(Exception):
    """No key in the environment, or the stored value does not decrypt with it."""


def _key() -> bytes:
    value = os.environ.get(ENV, "")
    if len(value) < 16:
        raise SecretUnavailable(f"set {ENV} (at least 16 characters) to store secrets encrypted")
    return hashlib.sha256(value.encode()).digest()


def can_store() -> bool:
    try:
        _key()
    except SecretUnavailable:
        return False
    return True


def encrypt(plain: str) -> str:
    cipher = AES.new(_key(), AES.MODE_GCM)
    ciphertext, tag = cipher.encrypt_and_digest(plain.encode())
    return PREFIX + base64.b64encode(bytes(cipher.nonce) + ciphertext + tag).decode()


def is_encrypted(stored: str) -> bool:
    """Whether a stored value is in this module's format (a base32 TOTP seed never contains ':')."""
    return stored.startswith(PREFIX)


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise SecretUnavailable("unknown secret format")
    raw = base64.b64decode(stored[len(PREFIX):])
    nonce, ciphertext, tag = raw[:16], raw[16:-16], raw[-16:]
    try:
        return AES.new(_key(), AES.MODE_GCM, nonce=nonce).decrypt_and_verify(ciphertext, tag).decode()
    except ValueError as exc:  # the tag does not match: wrong key or altered row
        raise SecretUnavailable(f"a stored secret does not decrypt with {ENV}") from exc
