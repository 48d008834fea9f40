"""Versioned model prices. A usage record points at the version it was charged at."""

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, String, Table, Text

from aigateway.store.metadata import BigId, metadata, utcnow

# Every price a model ever had (or was proposed to have); never updated except
# for a held version's status when the operator decides on it.
price_versions = Table(
    "price_versions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("input_price", BigInteger, nullable=False),  # units per 1M tokens
    Column("output_price", BigInteger, nullable=False),
    Column("free", Boolean, nullable=False, default=False),
    Column("source", String(200), nullable=False),  # config | manual | <source name>
    Column("status", String(20), nullable=False),  # applied | held | rejected
    Column("note", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
)
Index("ix_price_versions_model", price_versions.c.model, price_versions.c.id)

# The version in force for each model (one row per model).
model_prices = Table(
    "model_prices",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("price_version_id", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=utcnow),
)
