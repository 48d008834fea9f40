"""The MetaData every concern's tables register on, plus column helpers."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData

from aigateway.timeutil import utcnow

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


__all__ = ["BigId", "load_all_tables", "metadata", "utcnow"]


def load_all_tables() -> MetaData:
    """Import every concern's tables so the MetaData is complete (migrations, tests)."""
    import importlib
    import pkgutil

    import aigateway

    for mod in pkgutil.iter_modules(aigateway.__path__):
        if mod.ispkg:
            try:
                importlib.import_module(f"aigateway.{mod.name}.tables")
            except ModuleNotFoundError as exc:
                if exc.name != f"aigateway.{mod.name}.tables":
                    raise
    return metadata
