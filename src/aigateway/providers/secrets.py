"""Provider API keys stored encrypted: the shared mechanism is aigateway.crypto (also used for
TOTP seeds); this name stays for the code that says "provider secret"."""

from aigateway.crypto import ENV, PREFIX, SecretUnavailable, can_store, decrypt, encrypt

__all__ = ["ENV", "PREFIX", "SecretUnavailable", "can_store", "decrypt", "encrypt"]
