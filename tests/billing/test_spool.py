"""The usage spool: round trip of every field, torn lines, idempotent replay, drain, one owner."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from aigateway.accounts.service import create_customer
from aigateway.accounts.tables import customers
from aigateway.billing.ledger import ledger_sum, post_entry
from aigateway.billing.recorder import UsageEvent, UsageRecorder
from aigateway.billing.spool import SEGMENT_SUFFIX, Spool, SpoolLocked, default_spool_dir
from aigateway.billing.tables import ledger_entries, usage_records
from aigateway.billing.wallet import LocalWallet
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade


def event(i: int, customer_id: int = 1, cost: int = 1_000, **extra) -> UsageEvent:
    return UsageEvent(id=f"req_{i}", customer_id=customer_id, api_key_id=None, model="m", endpoint="chat",
                      status=200, cost=cost, **extra)


def spool_of(directory, cls=UsageEvent, **kw) -> Spool:
    return Spool(directory, cls, key=lambda e: e.id, **kw)


def segments(directory) -> list:
    return sorted(directory.glob("*" + SEGMENT_SUFFIX))


def test_every_field_round_trips_including_ones_added_later(tmp_path):
    @dataclasses.dataclass(slots=True)
    class Later:  # an event type with a field the spool was never told about
        id: str
        capped: bool = False
        note: str | None = None
        created_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))

    first = spool_of(tmp_path, Later)
    first.open()
    written = [Later("a", capped=True, note="x"), Later("b")]
    first.append(written)
    first.close()
    again = spool_of(tmp_path, Later)
    assert again.open().events == written
    again.close()

    usage = spool_of(tmp_path / "u")
    usage.open()
    full = event(1, provider="p", upstream_model="um", input_tokens=3, output_tokens=4, estimated=True,
                 price_version_id=9, stream=True, error="e", latency_ms=12)
    usage.append([full])
    usage.close()
    reread = spool_of(tmp_path / "u")
    assert reread.open().events == [full]
    reread.close()


def test_a_torn_last_line_is_skipped_and_the_rest_is_read(tmp_path):
    spool = spool_of(tmp_path)
    spool.open()
    spool.append([event(1), event(2)])
    path = segments(tmp_path)[0]
    spool.close()
    with path.open("ab") as fh:  # a crash in the middle of the next write
        fh.write(b'{"id": "req_3", "customer_id": 1, "api_k')
    again = spool_of(tmp_path)
    recovered = again.open()
    assert [e.id for e in recovered.events] == ["req_1", "req_2"]
    assert recovered.torn == 1
    again.close()


def test_one_process_per_spool_directory(tmp_path):
    owner = spool_of(tmp_path)
    owner.open()
    with pytest.raises(SpoolLocked):
        spool_of(tmp_path).open()
    owner.close()
    after = spool_of(tmp_path)
    after.open()  # the lock goes with its owner
    after.close()


def test_segments_are_removed_once_their_events_are_committed(tmp_path):
    spool = spool_of(tmp_path, segment_bytes=1)  # every group opens a new segment
    spool.open()
    spool.append([event(1), event(2)])
    spool.append([event(3)])
    spool.append([event(4)])
    assert len(segments(tmp_path)) == 3
    spool.committed(2)  # the first segment is complete
    assert len(segments(tmp_path)) == 2
    spool.committed(1)
    assert len(segments(tmp_path)) == 1  # the last one is still open
    assert spool.spooled == 1
    spool.committed(1)
    spool.close()
    assert segments(tmp_path) == []


def test_default_spool_dir_sits_next_to_the_sqlite_file():
    assert str(default_spool_dir("sqlite+aiosqlite:///./data/gw.db")) == "data/gw.db-spool"
    assert str(default_spool_dir("postgresql+asyncpg://u@h/db")) == "aigateway-spool"


async def _counts(engine, cid):
    async with engine.connect() as conn:
        usage = await conn.scalar(select(func.count()).select_from(usage_records))
        charges = await conn.scalar(select(func.count()).select_from(ledger_entries)
                                    .where(ledger_entries.c.kind == "charge"))
        balance = await conn.scalar(select(customers.c.balance).where(customers.c.id == cid))
        total = await ledger_sum(conn, cid)
    return usage, charges, balance, total


async def test_replay_commits_each_event_once_however_often_it_runs(db_url, tmp_path):
    engine = create_engine(db_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        cid = await create_customer(conn, "spool@example.com")
        await post_entry(conn, customer_id=cid, amount=1_000_000, kind="credit", reference="c1")
    # A process spooled 10 events, committed the first 4, then died (no close).
    dead = spool_of(tmp_path)
    dead.open()
    recorder = UsageRecorder(engine, LocalWallet(engine), spool=dead)
    events = [event(i, cid, cost=1_000 + i) for i in range(10)]
    for e in events:
        recorder.record(e)
    recorder._spool_waiting()
    await recorder._write(recorder._pending[:4])
    dead._io.shutdown(wait=True)
    import os

    os.close(dead._lock_fd)  # the kernel does this for a killed process
    os.close(dead._fd)

    for _start in range(2):  # the second start finds the spool already drained
        replayer = UsageRecorder(engine, LocalWallet(engine), spool=spool_of(tmp_path))
        await replayer.replay()
        await replayer.close(grace=1)
    usage, charges, balance, total = await _counts(engine, cid)
    await engine.dispose()
    assert (usage, charges) == (10, 10)
    assert balance == total == 1_000_000 - sum(e.cost for e in events)
    assert segments(tmp_path) == []


async def test_recorder_drains_the_spool_as_it_commits(sqlite_url, tmp_path):
    engine = create_engine(sqlite_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        cid = await create_customer(conn, "drain@example.com")
        await post_entry(conn, customer_id=cid, amount=1_000_000, kind="credit", reference="c1")
    spool = spool_of(tmp_path, segment_bytes=1)
    recorder = UsageRecorder(engine, LocalWallet(engine), spool=spool, flush_max=3)
    await recorder.replay()
    for i in range(7):
        recorder.record(event(i, cid))
        await recorder.flush()
    assert spool.spooled == 0 and recorder.uncommitted == 0
    assert len(segments(tmp_path)) <= 1  # at most the open segment, all of it committed
    await recorder.close(grace=1)
    assert segments(tmp_path) == []
    usage, charges, balance, total = await _counts(engine, cid)
    await engine.dispose()
    assert (usage, charges, balance, total) == (7, 7, 1_000_000 - 7_000, 1_000_000 - 7_000)


async def test_after_a_restart_the_wallet_counts_replayed_charges(sqlite_url, tmp_path):
    from aigateway.billing.wallet import InsufficientBalance

    engine = create_engine(sqlite_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        cid = await create_customer(conn, "replay-wallet@example.com")
        await post_entry(conn, customer_id=cid, amount=10_000, kind="credit", reference="c1")
    dead = spool_of(tmp_path)
    dead.open()
    dead.append([event(i, cid, cost=2_000) for i in range(4)])  # 8,000 spent, never committed
    dead.close()

    wallet = LocalWallet(engine)
    recorder = UsageRecorder(engine, wallet, spool=spool_of(tmp_path))
    await recorder.replay()  # what the app does before serving
    with pytest.raises(InsufficientBalance):
        await wallet.hold(cid, 5_000)  # would overdraw: only 2,000 is left
    hold = await wallet.hold(cid, 2_000)
    await recorder.close(grace=1)
    usage, charges, balance, total = await _counts(engine, cid)
    await engine.dispose()
    assert hold.amount == 2_000 and (usage, charges, balance, total) == (4, 4, 2_000, 2_000)
