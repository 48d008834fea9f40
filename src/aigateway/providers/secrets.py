"""Provider API keys stored encrypted at rest (AES-256-GCM, pycryptodome).

The key comes from the environment variable AIGATEWAY_SECRET_KEY (any long random
string; its SHA-256 is the AES key), never from the database, so a copy of the
database alone reveals no provider key. Without that variable no secret can be
stored (only `api_key_env`), and a stored one cannot be read: the provider is called
without a key and a warning says why. Hazard: a decrypted key must never reach a log,
an error message or a page.
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
        raise SecretUnavailable(f"set {ENV} (at least 16 characters) to store provider keys encrypted")
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


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise SecretUnavailable("unknown secret format")
    raw = base64.b64decode(stored[len(PREFIX):])
    nonce, ciphertext, tag = raw[:16], raw[16:-16], raw[-16:]
    try:
        return AES.new(_key(), AES.MODE_GCM, nonce=nonce).decrypt_and_verify(ciphertext, tag).decode()
    except ValueError as exc:  # the tag does not match: wrong key or altered row
        raise SecretUnavailable(f"a stored provider key does not decrypt with {ENV}") from exc
