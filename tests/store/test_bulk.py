"""bulk_insert on SQLite writes datetimes in the text form SQLAlchemy reads back, to the microsecond."""

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import create_async_engine

from aigateway.store.bulk import _sqlite_stamp, bulk_insert

STAMPS = [datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC),  # no microseconds: still six digits
          datetime(2026, 12, 3, 10, 0, 0, 7, tzinfo=UTC),
          datetime(1999, 1, 31, 23, 59, 59, 999_999),  # naive
          datetime(2026, 6, 1, 12, 30, 0, 500, tzinfo=timezone(timedelta(hours=5)))]  # wall time kept


@pytest.mark.parametrize("value", STAMPS)
def test_the_stamp_is_sqlalchemys_sqlite_form(value):
    assert _sqlite_stamp(value) == value.strftime("%Y-%m-%d %H:%M:%S.%f")


def test_rows_read_back_through_sqlalchemy(tmp_path):
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("at", DateTime),
                  Column("note", String), Column("later", DateTime, nullable=True))
    rows = [(i, value, f"row {i}", None if i % 2 else value) for i, value in enumerate(STAMPS[:3])]

    async def run():
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}")
        try:
            async with engine.begin() as conn:
                await conn.run_sync(table.metadata.create_all)
            async with engine.begin() as conn:
                await conn.execute(select(1))  # bulk_insert joins an open transaction
                await bulk_insert(conn, table, ("id", "at", "note", "later"), rows)
            async with engine.connect() as conn:
                return (await conn.execute(select(table).order_by(table.c.id))).all()
        finally:
            await engine.dispose()

    back = asyncio.run(run())
    assert [tuple(r) for r in back] == [(i, at.replace(tzinfo=None), note, later and later.replace(tzinfo=None))
                                        for i, at, note, later in rows]
