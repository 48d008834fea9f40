"""Console state: operator accounts, their sessions and recovery codes, and the audit log.

Operators are not customers: separate table, separate sessions, separate cookie, so no
customer credential can ever be read as an operator's. Secrets are stored hashed
(password: argon2id; session ids, enrolment tokens, recovery codes: SHA-256 of 256/60+
random bits). The TOTP seed must be readable to check a code, so it is stored encrypted
with AIGATEWAY_SECRET_KEY (twofactor.seeds; plain while that key is not set).
The audit log is append-only: the code has no UPDATE or DELETE for it.
"""

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, String, Table, Text

from aigateway.store.metadata import BigId, metadata, utcnow

operators = Table(
    "console_operators",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("role", String(20), nullable=False),  # "admin" | "viewer"
    Column("status", String(20), nullable=False, default="pending"),  # pending (not enrolled) | active | disabled
    Column("password_hash", String(200), nullable=True),
    Column("totp_secret", String(200), nullable=False),  # twofactor.seeds: "v1:..." or plain base32
    Column("totp_last_step", Integer, nullable=False, default=0),  # a TOTP code is accepted once
    Column("enrol_token_hash", String(64), nullable=True, unique=True),
    Column("enrol_expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
)

operator_recovery_codes = Table(
    "console_recovery_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("operator_id", Integer, ForeignKey("console_operators.id"), nullable=False, index=True),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

operator_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("operator_id", Integer, ForeignKey("console_operators.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

audit_log = Table(
    "console_audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("actor", String(340), nullable=False),  # "operator:<email>" or "cli"
    Column("action", String(60), nullable=False),
    Column("target", String(200), nullable=True),
    Column("before", Text, nullable=True),  # JSON
    Column("after", Text, nullable=True),  # JSON
    Column("reason", Text, nullable=True),
)
Index("ix_console_audit_log_at", audit_log.c.at)
