"""Every concern's migrations build exactly the schema its tables.py declares."""

import asyncio
import subprocess
import sys
import textwrap

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from aigateway.store.db import create_engine
from aigateway.store.metadata import load_all_tables
from aigateway.store.migrate import HEADS, alembic_config, applied_revisions, upgrade


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


def test_heads_is_what_the_version_table_holds_after_every_migration(db_url):
    """`HEADS` lets start-up skip Alembic: it must name exactly what a full upgrade records."""
    async def run():
        engine = create_engine(db_url)
        assert await applied_revisions(engine) is None  # a new database has no version table
        await upgrade(engine)
        applied = await applied_revisions(engine)
        await engine.dispose()
        return applied

    applied = asyncio.run(run())
    assert applied == HEADS, (
        "update aigateway.store.migrate.HEADS to the revisions a full upgrade records: "
        f"{sorted(applied or ())}")
    scripts = ScriptDirectory.from_config(alembic_config())
    assert HEADS <= {s.revision for s in scripts.walk_revisions()}


def test_a_current_schema_starts_without_importing_alembic(sqlite_url):
    """The serving process pays for Alembic only when there is something to migrate."""
    probe = textwrap.dedent(f"""
        import asyncio, sys
        from aigateway.store.db import create_engine
        from aigateway.store.migrate import upgrade

        async def main():
            engine = create_engine({sqlite_url!r})
            await upgrade(engine)
            await engine.dispose()

        asyncio.run(main())
        print(sorted({{m.split('.')[0] for m in sys.modules}} & {{'alembic', 'mako', 'pygments'}}))
    """)

    def run() -> str:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    assert run() == "['alembic', 'mako', 'pygments']"  # a new database: migrated by Alembic
    assert run() == "[]"  # the same database, now current: Alembic is not loaded
