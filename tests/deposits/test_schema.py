"""The hand-written migration creates exactly the tables declared in deposits/tables.py."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aigateway.store.db import create_engine
from aigateway.store.metadata import load_all_tables
from aigateway.store.migrate import upgrade

OURS = {"deposit_addresses", "deposit_transactions", "deposits", "deposit_leases", "deposit_history",
        "deposit_cursors", "deposit_rate_overrides"}


async def test_migration_matches_tables(sqlite_url):
    engine = create_engine(sqlite_url)
    await upgrade(engine)
    metadata = load_all_tables()

    def diff(sync_conn):
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(ctx, metadata)

    async with engine.connect() as conn:
        diffs = await conn.run_sync(diff)
    await engine.dispose()
    mine = [d for d in diffs if any(t in repr(d) for t in OURS)]
    assert mine == []
