"""Versioned model prices. A usage record points at the version it was charged at."""

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, String, Table, Text

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
    # Finer prices (migration 0009_pricing_fields), NULL when the model has none (see aigateway.catalog.Price):
    # units per 1M tokens, except request_price (units per request) and image_price (units per input image).
    Column("cached_input_price", BigInteger, nullable=True),
    Column("cache_write_price", BigInteger, nullable=True),
    Column("cache_write_long_price", BigInteger, nullable=True),
    Column("reasoning_price", BigInteger, nullable=True),
    Column("request_price", BigInteger, nullable=True),
    Column("image_price", BigInteger, nullable=True),
    # Long-context tiers, JSON [{"above": N, "input": units, "output": units, "cached_input": units?}].
    Column("tiers", Text, nullable=True),
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


# --- price sources (migration 0002_pricing) ---------------------------------

# How a version came about, beside the core row: the version it replaced (old
# price -> new price), and for source prices the upstream USD prices, the rate
# and markup used; for held versions when the operator decided.
price_version_details = Table(
    "price_version_details",
    metadata,
    Column("price_version_id", BigInteger, primary_key=True),
    Column("previous_version_id", BigInteger, nullable=True),
    Column("source_model", String(200), nullable=True),
    Column("usd_input", String(60), nullable=True),  # USD per token, the source's decimal text
    Column("usd_output", String(60), nullable=True),
    # The source's other USD fields as exact decimal text, JSON (migration 0009_pricing_fields).
    Column("usd_extra", Text, nullable=True),
    Column("fx_rate", String(60), nullable=True),  # TMT per USD
    Column("markup", String(60), nullable=True),
    Column("fetch_id", BigInteger, nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
)

# The operator's exchange rates, TMT per 1 unit of `currency`; the newest row is in force.
fx_rates = Table(
    "fx_rates",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("currency", String(10), nullable=False),
    Column("rate", String(60), nullable=False),  # decimal text, exact
    Column("source", String(50), nullable=False),  # config | manual
    Column("note", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
)
Index("ix_fx_rates_currency", fx_rates.c.currency, fx_rates.c.id)

# One row per source per fetch: what the operator sees as "price source status".
price_fetches = Table(
    "price_fetches",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("holder", String(200), nullable=False),  # which process fetched
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("ok", Boolean, nullable=True),  # NULL while running
    Column("error", Text, nullable=True),
    Column("entries", Integer, nullable=False, default=0),  # usable prices in the response
    Column("applied", Integer, nullable=False, default=0),
    Column("held", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("problems", Integer, nullable=False, default=0),  # tied models missing, variable or malformed
    Column("detail", Text, nullable=True),  # JSON {model: {"outcome", ...}}
)
Index("ix_price_fetches_source", price_fetches.c.source, price_fetches.c.id)

# Context length / output cap reported by a source; used when the config sets none.
model_limits = Table(
    "model_limits",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("context_length", Integer, nullable=True),
    Column("max_output_tokens", Integer, nullable=True),
    Column("source", String(100), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=utcnow),
    # A fetched change beyond the guardrail, waiting for the operator (migration 0006_pricing_held_limits):
    # held_status is "held" or "rejected" (the same values are not proposed again), NULL when none.
    Column("held_context_length", Integer, nullable=True),
    Column("held_max_output_tokens", Integer, nullable=True),
    Column("held_source", String(100), nullable=True),
    Column("held_status", String(20), nullable=True),
    Column("held_at", DateTime(timezone=True), nullable=True),
)

# The fetch schedule shared by all replicas: a lease so one process fetches at a
# time, and when the last fetch started so the interval holds across replicas.
# Times are epoch milliseconds (plain integers compare the same on every database).
pricing_schedule = Table(
    "pricing_schedule",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("holder", String(200), nullable=False, default=""),
    Column("lease_until_ms", BigInteger, nullable=False, default=0),
    Column("last_started_ms", BigInteger, nullable=False, default=0),
    Column("last_finished_ms", BigInteger, nullable=False, default=0),
    Column("last_ok", Boolean, nullable=False, default=True),
    Column("requested_ms", BigInteger, nullable=False, default=0),  # "fetch now" asked at
)
