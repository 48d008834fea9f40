"""Run Alembic migrations programmatically (`aigateway migrate`, start-up, tests).

Alembic (with Mako and Pygments, which it imports) is ~8-11 MiB of a serving process's
memory that is used for nothing once the schema is current, and every start-up checks it. So
`upgrade` first reads the version table and compares it with `HEADS`, the revisions that table
holds once every migration has run; only when they differ (a new database, or a new release
with migrations) is Alembic imported and run.

Invariant: `HEADS` is exactly what `alembic_version` holds after upgrading to heads. A test
migrates empty SQLite and PostgreSQL databases and compares, so a new migration that does not
update `HEADS` fails the suite instead of being skipped at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# The newest revision of every concern's branch, as the version table records them.
HEADS = frozenset({
    "0004_portal_flash",
    "0007_deposits_review",
    "0008_throttle",
    "0008_vouchers",
    "0009_pricing_fields",
    "0009_usage_breakdown",
    "0010_key_limits",
    "0012_usage_rollups",
    "0013_portal_tokens",
    "0016_console_model_pricing",
    "0016_totp_seeds_sealed",
})


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


async def applied_revisions(engine: AsyncEngine) -> frozenset[str] | None:
    """The revisions in the version table, or None when there is none (a new database)."""
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return frozenset(row[0] for row in rows)
    except DBAPIError:
        # No table yet. (An unreachable database lands here too; the upgrade below then
        # reports it as before.)
        return None


async def upgrade(engine: AsyncEngine, target: str = "heads") -> None:
    """Bring the schema to the newest revision of every concern's branch."""
    if target == "heads" and await applied_revisions(engine) == HEADS:
        return

    def _run(sync_conn) -> None:
        from alembic import command

        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, target)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together must not migrate concurrently.
            await conn.execute(text("SELECT pg_advisory_xact_lock(7243100)"))
        await conn.run_sync(_run)
