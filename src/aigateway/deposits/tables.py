"""Deposit addresses, transactions seen on chain, credited deposits, and the watcher lease."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from aigateway.store.metadata import BigId, metadata, utcnow

# One permanent address per customer, derived at m/44'/195'/0'/0/<derivation_index> from the
# configured xpub. Customer, index and address are each unique: an index is never reused.
deposit_addresses = Table(
    "deposit_addresses",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False, unique=True),
    Column("derivation_index", Integer, nullable=False, unique=True),
    Column("address", String(64), nullable=False, unique=True),
    Column("xpub_fp", String(16), nullable=False),  # which xpub derived it (sha256 prefix, not secret)
    Column("network", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    # Discovery resumes from here (block timestamp, ms) minus an overlap.
    Column("cursor_ms", BigInteger, nullable=False, default=0),
    Column("last_polled_ms", BigInteger, nullable=False, default=0),
    # Deposit tab opened recently: poll often until then (epoch ms).
    Column("watch_until_ms", BigInteger, nullable=False, default=0),
)

Index("ix_deposit_addresses_last_polled", deposit_addresses.c.last_polled_ms)  # the fallback's oldest-first
Index("ix_deposit_addresses_watch_until", deposit_addresses.c.watch_until_ms)  # open tabs, every tick

# Every incoming USDT transfer discovered for one of our addresses, until it is resolved:
# pending (seen, not yet solidified) -> credited | ignored (below minimum) | rejected | expired.
# Discovery writes here first, so a crash before crediting loses nothing.
deposit_transactions = Table(
    "deposit_transactions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("tx_id", String(64), nullable=False),
    Column("address_id", Integer, ForeignKey("deposit_addresses.id"), nullable=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("value", String(80), nullable=False),  # base units as the API reported them (display only)
    Column("block_timestamp_ms", BigInteger, nullable=False, default=0),
    Column("status", String(20), nullable=False, default="pending"),
    Column("note", Text, nullable=True),
    Column("checks", Integer, nullable=False, default=0),
    Column("seen_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("next_check_ms", BigInteger, nullable=False, default=0),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    # Consecutive errors while processing this row (not API outages): it backs off, growing,
    # and is parked as needs_review after `max_failures`, so one bad row never blocks the rest.
    Column("failures", Integer, nullable=False, default=0, server_default="0"),
    UniqueConstraint("tx_id", "address_id", name="uq_deposit_transactions_tx_address"),
)
Index("ix_deposit_transactions_status_next", deposit_transactions.c.status, deposit_transactions.c.next_check_ms)
Index("ix_deposit_transactions_customer", deposit_transactions.c.customer_id, deposit_transactions.c.seen_at)

# One row per verified Transfer log to one of our addresses; (tx_id, log_index) is unique and
# the ledger entry 'deposit:<tx_id>:<log_index>' is written in the same transaction.
# Rate and amounts are recorded as applied: changing the configured rate never changes them.
deposits = Table(
    "deposits",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("tx_id", String(64), nullable=False),
    Column("log_index", Integer, nullable=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("address_id", Integer, ForeignKey("deposit_addresses.id"), nullable=False),
    Column("address", String(64), nullable=False),
    Column("network", String(16), nullable=False),
    Column("contract", String(64), nullable=False),
    Column("from_address", String(64), nullable=True),
    Column("amount_usdt", BigInteger, nullable=False),  # token base units (USDT: 6 decimals)
    Column("decimals", Integer, nullable=False),
    Column("rate", String(40), nullable=False),  # TMT per USDT applied (after spread)
    Column("base_rate", String(40), nullable=False),
    Column("spread", String(40), nullable=False),
    Column("amount_tmt", BigInteger, nullable=False),  # units credited; 0 when below the minimum
    Column("status", String(20), nullable=False),  # credited | below_minimum
    Column("ledger_reference", String(200), nullable=True),
    Column("block_number", BigInteger, nullable=True),
    Column("block_timestamp_ms", BigInteger, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    UniqueConstraint("tx_id", "log_index", name="uq_deposits_tx_log"),
)
Index("ix_deposits_customer_created", deposits.c.customer_id, deposits.c.created_at)

# A lease: the watcher holding an unexpired row is the only active one.
deposit_leases = Table(
    "deposit_leases",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("holder", String(120), nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)

# What happened to a seen transaction, and who did it: parked by the watcher, retried,
# approved or rejected by the operator (`admin deposits retry|approve|reject`). Append-only.
deposit_history = Table(
    "deposit_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("tx_id", String(64), nullable=False),
    Column("action", String(20), nullable=False),  # parked | held | retry | approve | reject
    Column("actor", String(120), nullable=False),
    Column("note", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
)
Index("ix_deposit_history_tx", deposit_history.c.tx_id, deposit_history.c.id)

# Discovery cursors of the contract-event follower (name -> block timestamp ms reached):
# the follower resumes from here, minus an overlap, after a restart.
deposit_cursors = Table(
    "deposit_cursors",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("cursor_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# An explicit deposit rate set by the operator (`admin deposits rate set|clear`); the newest
# row is in force, rate NULL = none (deposits follow the USD rate of `admin fx set`). Append-only.
deposit_rate_overrides = Table(
    "deposit_rate_overrides",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("rate", String(40), nullable=True),
    Column("note", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
)
