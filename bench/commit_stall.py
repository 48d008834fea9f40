"""What the group commit costs the request loop: CPU per commit, and a request's latency beside it.

    .venv/bin/python bench/commit_stall.py [--db sqlite|postgres] [--seconds 10] [--rounds 3]

A request served while the group commit runs on the same event loop waits until the commit's
current step gives the loop back. This isolates that from HTTP and the rest of the gateway:

* a server on the request loop (uvloop, as `aigateway serve`) answers one small TCP message at a
  time; for each it burns `--work` ms of CPU (about what a production request costs the gateway)
  and records one usage event with a charge, as a finished request does;
* a client process on the other core sends the next message when the answer arrives (one
  connection, like the bench's c=1 tests) and keeps every round-trip time;
* the recorder commits every 50 ms (the default `flush_interval`) to a real database: a temporary
  SQLite file or a private PostgreSQL cluster (pinned to the server's core, as in bench/run.py;
  `--db-cpu 1` puts it on the client's core instead; on a 2-core machine that moves the contention
  to the client rather than removing it, so read it beside the default, not as "no database CPU").

First, the request loop's CPU per group commit by batch size (no traffic; thread CPU time).
Then variants, taking turns each round: `none` (no recorder: the floor) and `loop` (the commit on
the request loop, as shipped). A `thread` variant (the commit on a thread of its own) was measured
with the experiment of commit "Experiment: the group commit on a thread" and left out: see
bench/RESULTS.md. Printed: round-trip
p50 / p99 / p99.9 / max in ms, the median over rounds, the request loop's own CPU per request beyond
`--work` (thread CPU time, which a busy box disturbs far less than latency: it is what the
commit costs the loop), and rows committed per second (so every variant is known to have
committed what it recorded). Latency is wall time, so a busy box shows
in it; the variants are measured in the same rounds for that reason.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from aigateway.accounts.service import create_customer  # noqa: E402
from aigateway.billing.ledger import post_entry  # noqa: E402
from aigateway.billing.recorder import UsageEvent, UsageRecorder  # noqa: E402
from aigateway.billing.wallet import LocalWallet  # noqa: E402
from aigateway.store.db import create_engine  # noqa: E402
from aigateway.store.migrate import upgrade  # noqa: E402

SERVER_CPU, CLIENT_CPU = 0, 1
CLIENT = r"""
import socket, struct, sys, time, os
os.sched_setaffinity(0, {%d})
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
out = []
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    t0 = time.perf_counter()
    s.sendall(b"x")
    if not s.recv(1):
        break
    out.append(time.perf_counter() - t0)
s.close()
sys.stdout.buffer.write(struct.pack("%%dd" %% len(out), *out))
""" % CLIENT_CPU


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class _Server(asyncio.Protocol):
    def __init__(self, recorder: UsageRecorder | None, customer: int, work: float) -> None:
        self.recorder, self.customer, self.work = recorder, customer, work

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        _spin(self.work)
        if self.recorder is not None:
            self.recorder.record(UsageEvent(id=uuid.uuid4().hex, customer_id=self.customer, api_key_id=None,
                                            model="m", endpoint="chat", status=200, input_tokens=10,
                                            output_tokens=20, cost=3))
        self.transport.write(b"y" * len(data))  # type: ignore[attr-defined]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


async def _one(variant: str, url: str, customer: int, a: argparse.Namespace) -> dict[str, float]:
    recorder = None
    committed_before = 0
    if variant != "none":
        engine = create_engine(url, pool_size=2)
        recorder = UsageRecorder(engine, LocalWallet(engine))
        recorder.start()
        committed_before = await _rows(url)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Server(recorder, customer, a.work / 1e3), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cpu0 = time.thread_time()  # the request loop's thread only: what the requests wait behind
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, str(port), str(a.seconds),
                                                stdout=subprocess.PIPE)
    raw, _ = await proc.communicate()
    loop_cpu = time.thread_time() - cpu0
    server.close()
    rtts = list(struct.unpack(f"{len(raw) // 8}d", raw))
    rows = 0.0
    if recorder is not None:
        await recorder.close()
        rows = (await _rows(url) - committed_before) / a.seconds
    return {"n": len(rtts), "p50": _pct(rtts, 0.5), "p99": _pct(rtts, 0.99), "p999": _pct(rtts, 0.999),
            "max": max(rtts) * 1e3,
            "loop_cpu_us": 1e6 * loop_cpu / max(1, len(rtts)) - a.work * 1e3, "rows_per_s": rows, "recorded_per_s": len(rtts) / a.seconds}


async def commit_cpu(url: str, customer: int, sizes: tuple[int, ...] = (1, 35, 70, 200),
                     repeats: int = 30) -> dict[int, float]:
    """The request loop's CPU per group commit (thread CPU time, median of `repeats`), by batch size."""
    engine = create_engine(url, pool_size=2)
    recorder = UsageRecorder(engine, LocalWallet(engine))
    out = {}
    for n in sizes:
        spent = []
        for _ in range(repeats + 3):
            for _ in range(n):
                recorder.record(UsageEvent(id=uuid.uuid4().hex, customer_id=customer, api_key_id=None, model="m",
                                           endpoint="chat", status=200, input_tokens=10, output_tokens=20, cost=3))
            started = time.thread_time()
            await recorder.flush()
            spent.append(time.thread_time() - started)
        out[n] = statistics.median(spent[3:]) * 1e3  # the first few warm the caches up
    await recorder.close()
    return out


async def _rows(url: str) -> int:
    from sqlalchemy import func, select

    from aigateway.billing.tables import usage_records

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(usage_records))).scalar_one())
    finally:
        await engine.dispose()


async def _prepare(url: str) -> int:
    engine = create_engine(url)
    await upgrade(engine)
    async with engine.begin() as conn:
        cid = await create_customer(conn, "stall@example.com")
        await post_entry(conn, customer_id=cid, amount=10**15, kind="credit", reference="stall")
    await engine.dispose()
    return cid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rounds", type=int, default=3, help="0: only the CPU per commit")
    p.add_argument("--work", type=float, default=0.2, help="ms of CPU per request on the server")
    p.add_argument("--variants", default="none,loop")
    p.add_argument("--db-cpu", type=int, default=SERVER_CPU,
                   help="the core PostgreSQL runs on (default: the server's, as bench/run.py pins it)")
    a = p.parse_args()
    os.sched_setaffinity(0, {SERVER_CPU})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    tmp = tempfile.mkdtemp(prefix="aigw-stall-")
    procs = pg = None
    if a.db == "postgres":
        from postgres import Postgres
        from procs import Procs

        import mock

        procs = Procs()
        pg = Postgres(procs, tmp, mock.free_port(), cpu=a.db_cpu)
        pg.start(os.path.join(tmp, "postgres.log"))
        url = pg.createdb("aigw_stall").replace("postgresql://", "postgresql+asyncpg://")
    else:
        url = f"sqlite+aiosqlite:///{tmp}/stall.db"
    try:
        customer = asyncio.run(_prepare(url))
        per_commit = asyncio.run(commit_cpu(url, customer))
        print("request-loop CPU per group commit (ms, median of 30), by events in the batch: "
              + ", ".join(f"{n}: {ms:.2f}" for n, ms in per_commit.items()), flush=True)
        if a.rounds == 0:
            return
        variants = a.variants.split(",")
        results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        for r in range(a.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                res = asyncio.run(_one(v, url, customer, a))
                results[v].append(res)
                print(f"round {r + 1} {v:<7} n={res['n']:>6}  p50 {res['p50']:.3f}  p99 {res['p99']:.3f}  "
                      f"p99.9 {res['p999']:.3f}  max {res['max']:.2f} ms  loop CPU {res['loop_cpu_us']:.0f} us/req  committed {res['rows_per_s']:.0f}/s "
                      f"of {res['recorded_per_s']:.0f}/s", flush=True)
        print(f"\n{a.db}, {a.seconds:g} s x {a.rounds} rounds, {a.work:g} ms CPU per request; median over rounds (ms):")
        print("| variant | round trips/s | p50 | p99 | p99.9 | max | request-loop CPU per request beyond --work (us) |")
        print("|---|---|---|---|---|---|---|")
        for v in variants:
            med = {k: statistics.median(x[k] for x in results[v]) for k in results[v][0]}
            print(f"| {v} | {med['recorded_per_s']:.0f} | {med['p50']:.3f} | {med['p99']:.3f} | "
                  f"{med['p999']:.3f} | {med['max']:.2f} | {med['loop_cpu_us']:.0f} |")
    finally:
        if procs is not None:
            procs.stop_all()


if __name__ == "__main__":
    main()
