"""Customers (who hold a balance) and API keys (stored only as SHA-256 hashes)."""

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Integer, String, Table, Text

from aigateway.store.metadata import metadata, utcnow

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=True),  # argon2id; null = CLI-only customer
    Column("status", String(20), nullable=False, default="active"),
    # Balance in units (see money.py); always equals the sum of this customer's ledger.
    Column("balance", BigInteger, nullable=False, default=0),
    # Bumped on every balance change, so caches can tell which snapshot is newer.
    Column("balance_version", BigInteger, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(12), nullable=False),  # shown as "gw_AbCd…wxyz"
    Column("last4", String(4), nullable=False),
    Column("allowed_models", Text, nullable=True),  # JSON list; null = every model
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow),
)
Index("ix_api_keys_updated_at", api_keys.c.updated_at)
Index("ix_customers_updated_at", customers.c.updated_at)
