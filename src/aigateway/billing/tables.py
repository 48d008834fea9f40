"""The append-only ledger and the per-request usage records."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    false,
    text,
)

from aigateway.store.metadata import BigId, metadata, utcnow

# Every balance change is one row here; rows are never updated or deleted.
# `reference` is unique, which makes each change idempotent: a deposit, a charge
# or an admin credit applied twice fails on the second insert.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),  # units; + credit, - charge
    Column("kind", String(20), nullable=False),  # credit | charge | deposit | adjustment
    Column("reference", String(200), nullable=False, unique=True),
    Column("memo", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
)
Index("ix_ledger_customer_created", ledger_entries.c.customer_id, ledger_entries.c.created_at)
# Partial: a customer's entries other than charges (deposits, credits...), which the portal lists one
# by one beside the rollups; without it, listing them reads every charge the customer ever made.
# Queries must state the predicate literally (NONCHARGE) for SQLite to use it.
NONCHARGE = "kind <> 'charge'"
Index("ix_ledger_customer_noncharge", ledger_entries.c.customer_id, ledger_entries.c.created_at,
      postgresql_where=text(NONCHARGE), sqlite_where=text(NONCHARGE))

usage_records = Table(
    "usage_records",
    metadata,
    Column("id", String(40), primary_key=True),  # the request id ("req_...")
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("api_key_id", Integer, ForeignKey("api_keys.id"), nullable=True),
    Column("model", String(200), nullable=False),
    Column("endpoint", String(20), nullable=False),  # chat | embeddings
    Column("provider", String(100), nullable=True),
    Column("upstream_model", String(200), nullable=True),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("estimated", Boolean, nullable=False, default=False),  # counted by us, not the upstream
    Column("cost", BigInteger, nullable=False, default=0),  # units
    Column("price_version_id", BigInteger, nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("status", Integer, nullable=False),  # HTTP status the client got
    Column("error", Text, nullable=True),
    Column("latency_ms", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    # Charged the hold, not the reported tokens: the upstream reported more than it was held for.
    Column("capped", Boolean, nullable=False, default=False, server_default=false()),
    # The breakdown the cost was computed from (migration 0009_usage_breakdown); parts of input/output.
    Column("cached_tokens", Integer, nullable=False, default=0, server_default=text("0")),
    Column("cache_write_tokens", Integer, nullable=False, default=0, server_default=text("0")),
    Column("cache_write_long_tokens", Integer, nullable=False, default=0, server_default=text("0")),
    Column("reasoning_tokens", Integer, nullable=False, default=0, server_default=text("0")),
    Column("images", Integer, nullable=False, default=0, server_default=text("0")),
    Column("request_fees", Integer, nullable=False, default=0, server_default=text("0")),  # 1 when a fee applied
)
Index("ix_usage_customer_created", usage_records.c.customer_id, usage_records.c.created_at)
# Partial: only the (rare) capped rows are indexed, so the operator's report stays quick on a big table.
Index("ix_usage_capped_created", usage_records.c.created_at,
      postgresql_where=text("capped"), sqlite_where=text("capped"))

# Daily rollups of usage_records per (customer, UTC day, model), kept by the group commit in the
# same transaction as the usage rows (billing.rollups), so the portal reads a few hundred rows
# whatever the history. `charges`/`last_charge_at` count the rows that cost something (each has
# one ledger charge), which the transactions page groups per day.
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("customer_id", Integer, ForeignKey("customers.id"), primary_key=True),
    Column("day", Date, primary_key=True),  # UTC calendar day of created_at
    Column("model", String(200), primary_key=True),
    Column("requests", BigInteger, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cost", BigInteger, nullable=False, default=0),  # units, == sum of usage_records.cost
    Column("charges", BigInteger, nullable=False, default=0),  # rows with cost > 0
    Column("last_charge_at", DateTime(timezone=True), nullable=True),
)
