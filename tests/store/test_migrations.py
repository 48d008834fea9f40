"""Every concern's migrations build exactly the schema its tables.py declares."""

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aigateway.store.db import create_engine
from aigateway.store.metadata import load_all_tables
from aigateway.store.migrate import upgrade


def test_migrated_schema_matches_the_table_definitions(db_url):
    async def diff():
        engine = create_engine(db_url)
        await upgrade(engine)
        await upgrade(engine)  # a second run is a no-op
        async with engine.connect() as conn:
            changes = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), load_all_tables()))
        await engine.dispose()
        return changes

    assert asyncio.run(diff()) == []
