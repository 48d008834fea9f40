"""One row of limits per API key that has any; no row = no limits beyond the model allowlist.

Changing a row bumps `api_keys.updated_at` too (see `service.set_limits`), so every
replica's key cache and limits cache pick the change up within a second.
"""

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Integer, String, Table

from aigateway.store.metadata import metadata, utcnow

api_key_limits = Table(
    "api_key_limits",
    metadata,
    Column("key_id", Integer, ForeignKey("api_keys.id"), primary_key=True),
    Column("spend_cap", BigInteger, nullable=True),  # units per period; null = no cap
    Column("spend_period", String(10), nullable=False, default="month"),  # day | month | lifetime
    Column("rpm", Integer, nullable=True),  # requests per minute
    Column("tpm", Integer, nullable=True),  # tokens (in + out) per minute
    Column("concurrency", Integer, nullable=True),  # requests in flight at once
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow),
)
