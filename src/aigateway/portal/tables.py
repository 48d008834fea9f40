"""Portal state: login sessions and failed-login counters.

Sessions are kept server-side (see sessions.py for why); the cookie holds only
a random id, and the table only its SHA-256, so a leaked table cannot be
replayed as cookies.
"""

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Table

from aigateway.store.metadata import metadata, utcnow

portal_sessions = Table(
    "portal_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 hex of the cookie value
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),  # synchronizer token of this session
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
Index("ix_portal_sessions_expires_at", portal_sessions.c.expires_at)

# No longer written: login throttling moved to aigateway.throttle (throttle_counters). Kept until a
# portal migration drops it. (Was: one row per (email, client IP) with recent failed logins.)
portal_login_failures = Table(
    "portal_login_failures",
    metadata,
    Column("key_hash", String(64), primary_key=True),  # sha256 hex of "email|ip"
    Column("failures", Integer, nullable=False, default=0),
    Column("last_failed_at", DateTime(timezone=True), nullable=False, default=utcnow),
)
Index("ix_portal_login_failures_last_failed_at", portal_login_failures.c.last_failed_at)

# A one-time message for the next page of a session (post/redirect/get): a new API key's
# secret travels here from the POST to the GET that shows it once. The payload is
# encrypted with a key derived from the session cookie, which the database never holds.
portal_flash = Table(
    "portal_flash",
    metadata,
    Column("session_hash", String(64), primary_key=True),  # portal_sessions.id_hash
    Column("payload", LargeBinary, nullable=False),  # nonce | AES-GCM ciphertext | tag
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
)
Index("ix_portal_flash_created_at", portal_flash.c.created_at)

# One-time links sent by e-mail: password reset and e-mail verification. Only the SHA-256
# of the token is stored (a leaked table opens nothing); a token is used up by one
# conditional UPDATE (used_at IS NULL AND not expired), so two clicks cannot both succeed.
portal_tokens = Table(
    "portal_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex of the token in the link
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False, index=True),
    Column("purpose", String(20), nullable=False),  # reset | verify
    Column("email", String(320), nullable=False),  # the address the link was sent to
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
)
Index("ix_portal_tokens_expires_at", portal_tokens.c.expires_at)

# The addresses a customer proved to receive (a verification or reset link was followed).
# Verified means: a row for the customer's current email.
portal_verified_emails = Table(
    "portal_verified_emails",
    metadata,
    Column("customer_id", Integer, ForeignKey("customers.id"), primary_key=True),
    Column("email", String(320), primary_key=True),
    Column("verified_at", DateTime(timezone=True), nullable=False, default=utcnow),
)

# Optional TOTP two-factor (issue 13). One row per customer who started enrolment; the
# factor is on only when `enabled_at` is set (enrolment proved the app holds the secret).
# `last_step` only moves forward, in the UPDATE that accepts a code: each code works once.
portal_totp = Table(
    "portal_totp",
    metadata,
    Column("customer_id", Integer, ForeignKey("customers.id"), primary_key=True),
    Column("secret", String(200), nullable=False),  # TOTP seed, encrypted (twofactor.seeds)
    Column("last_step", Integer, nullable=False, default=0),
    Column("enabled_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
)

# Single-use recovery codes, stored as SHA-256; spent by one conditional UPDATE (used_at IS NULL).
portal_recovery_codes = Table(
    "portal_recovery_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False, index=True),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

# A log-in that passed the password and waits for the second factor. The cookie holds a
# random token, the table its SHA-256; no session exists until the code is accepted, and
# the row is deleted by the same statement that lets the log-in through (used once).
portal_pending_logins = Table(
    "portal_pending_logins",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("target", String(2000), nullable=False),  # safe_next() of the log-in form
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
Index("ix_portal_pending_logins_expires_at", portal_pending_logins.c.expires_at)
