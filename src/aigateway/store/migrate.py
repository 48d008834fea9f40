"""Run Alembic migrations programmatically (`aigateway migrate`, start-up, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


async def upgrade(engine: AsyncEngine, target: str = "heads") -> None:
    """Bring the schema to the newest revision of every concern's branch."""

    def _run(sync_conn) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, target)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together must not migrate concurrently.
            await conn.execute(text("SELECT pg_advisory_xact_lock(7243100)"))
        await conn.run_sync(_run)
