"""Voucher batches, vouchers (hashes only) and the operator's audit trail.

A code is shown in clear once, when its batch is created; the table keeps only
its SHA-256 (a code has >= 95 random bits, so no salt or slow hash is needed,
as with API keys). A voucher moves active -> redeemed or active -> void, each by
one conditional UPDATE, so it can be redeemed at most once whatever the replicas do.
"""

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Integer, String, Table, Text

from aigateway.store.metadata import BigId, metadata, utcnow

voucher_batches = Table(
    "voucher_batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("label", String(120), nullable=False),
    Column("amount", BigInteger, nullable=False),  # units, per voucher
    Column("count", Integer, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),  # redemption refused from then on
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("voided_at", DateTime(timezone=True), nullable=True),
)

vouchers = Table(
    "vouchers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("batch_id", Integer, ForeignKey("voucher_batches.id"), nullable=False, index=True),
    Column("code_hash", String(64), nullable=False, unique=True),  # sha256 hex of the normalised code
    Column("status", String(10), nullable=False, default="active"),  # active | redeemed | void
    Column("redeemed_by", Integer, ForeignKey("customers.id"), nullable=True),
    Column("redeemed_at", DateTime(timezone=True), nullable=True),
    Column("voided_at", DateTime(timezone=True), nullable=True),
)
Index("ix_vouchers_redeemed_by", vouchers.c.redeemed_by)

# Every operator action (create, void) and every lock the throttle imposes is one row.
voucher_audit = Table(
    "voucher_audit",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("actor", String(120), nullable=False),  # operator (OS user) or "customer:<id>"
    Column("action", String(40), nullable=False),  # create | void-batch | void-code | report | ...
    Column("batch_id", Integer, nullable=True),
    Column("detail", Text, nullable=True),
)
