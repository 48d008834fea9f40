"""One counter row per throttled subject (a hashed account, IP or pair).

Times are epoch milliseconds in integers so the check-and-record step can be
one portable SQL statement (no dialect-specific interval arithmetic).
"""

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from aigateway.store.metadata import metadata

throttle_counters = Table(
    "throttle_counters",
    metadata,
    Column("key_hash", String(64), primary_key=True),  # sha256 hex of "scope|subject"
    Column("scope", String(40), nullable=False),  # e.g. login:account, voucher:ip
    Column("label", String(120), nullable=True),  # shown to the operator; never an email or password
    Column("hits", Integer, nullable=False, default=0),  # attempts counted in the current streak
    Column("last_ms", BigInteger, nullable=False),  # when the last counted attempt was let through
)
Index("ix_throttle_counters_scope_last", throttle_counters.c.scope, throttle_counters.c.last_ms)
