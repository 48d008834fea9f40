"""Inserts: many rows at the driver's speed (the group commit of usage and charges), and
INSERT ... ON CONFLICT DO NOTHING (exactly-once writes keyed by a unique reference).

Through SQLAlchemy, an executemany costs parameter processing per row on the
event loop; at thousands of requests per second that was a sixth of the
gateway's CPU. Here PostgreSQL gets binary COPY (asyncpg) and SQLite a plain
executemany of tuples on the raw driver, inside the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert


def insert_ignoring_duplicates(conn: AsyncConnection, table: Table) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING for the connection's dialect (a duplicate key is a no-op)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    raise RuntimeError(f"unsupported database dialect {dialect}")


def _sqlite_stamp(value: datetime) -> str:
    # The text form SQLAlchemy's SQLite DATETIME type writes and reads back: the wall time, no
    # offset, always six digits of microseconds. (isoformat is ~5x faster than strftime; its
    # first 26 characters are exactly that form, an offset only follows them.)
    return value.isoformat(" ", "microseconds")[:26]


_stamp_columns: dict[tuple[str, tuple[str, ...]], tuple[int, ...]] = {}


def _sqlite_rows(table: Table, columns: tuple[str, ...], rows: list[tuple]) -> list[tuple]:
    """The rows with their DateTime columns as SQLite text; the other values pass as they are."""
    key = (table.name, columns)
    stamps = _stamp_columns.get(key)
    if stamps is None:
        stamps = _stamp_columns[key] = tuple(i for i, name in enumerate(columns)
                                             if isinstance(table.c[name].type, DateTime))
    if not stamps:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for i in stamps:
            value = values[i]
            if isinstance(value, datetime):
                values[i] = _sqlite_stamp(value)
        out.append(tuple(values))
    return out


async def bulk_insert(conn: AsyncConnection, table: Table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert rows (tuples in `columns` order). Raises the driver's integrity error on a duplicate key."""
    if not rows:
        return
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None  # hazard: a pooled connection always has its driver connection
    if conn.dialect.name == "postgresql":
        if not driver.is_in_transaction():
            # SQLAlchemy opens the transaction lazily, on its first statement; a COPY
            # before that would commit on its own.
            raise RuntimeError("bulk_insert needs a transaction that has already run a statement")
        await driver.copy_records_to_table(table.name, records=rows, columns=list(columns))
    else:
        placeholders = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})"
        await driver.executemany(sql, _sqlite_rows(table, columns, rows))
