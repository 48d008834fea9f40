"""What a request's hold and settle cost: the in-process wallet vs the Redis wallet (CPU per request).

    .venv/bin/python bench/wallet_cost.py [--n 20000] [--concurrency 32]

Every request places one hold and settles it; with several workers (`serve --workers N`) or replicas
that is two Redis round trips (a Lua script each). The figure that matters for "req/s per core" is
CPU time, not wall time, so the numbers hold on a busy shared box: the gateway process's own CPU
(`time.process_time`) and the private `redis-server`'s (from /proc), per hold+settle, for `--n`
requests `--concurrency` at a time, after a warm-up. Database: a temporary SQLite file (only read
once per customer here). Redis: a private `redis-server` on a free port (no persistence), stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from aigateway.accounts.service import create_customer
from aigateway.billing.ledger import post_entry
from aigateway.billing.redis_wallet import RedisWallet
from aigateway.billing.wallet import LocalWallet
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def _cycles(wallet, customers: list[int], n: int, concurrency: int) -> None:
    async def one(worker: int) -> None:
        for i in range(worker, n, concurrency):
            hold = await wallet.hold(customers[i % len(customers)], 100)
            await wallet.settle(hold, 33)

    await asyncio.gather(*(one(w) for w in range(concurrency)))


async def measure(wallet, customers: list[int], n: int, concurrency: int, server_pid: int | None) -> dict:
    await _cycles(wallet, customers, min(n, 2000), concurrency)  # warm-up: accounts loaded, scripts cached
    server0 = _cpu_seconds(server_pid) if server_pid else 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await _cycles(wallet, customers, n, concurrency)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    server = (_cpu_seconds(server_pid) - server0) if server_pid else 0.0
    return {"client_us": 1e6 * cpu / n, "server_us": 1e6 * server / n, "wall_us": 1e6 * wall / n}


async def main(a: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="aigw-wallet-")
    port = _free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp}/w.db")
        await upgrade(engine)
        customers = []
        async with engine.begin() as conn:
            for i in range(8):
                cid = await create_customer(conn, f"w{i}@example.com")
                await post_entry(conn, customer_id=cid, amount=10**15, kind="credit", reference=f"c{i}")
                customers.append(cid)
        await _wait_redis(port)
        rows = []
        for name in ("local", "redis"):
            if name == "local":
                wallet = LocalWallet(engine)
                result = await measure(wallet, customers, a.n, a.concurrency, None)
            else:
                wallet = RedisWallet(engine, f"redis://127.0.0.1:{port}/0", key_prefix="wc")
                result = await measure(wallet, customers, a.n, a.concurrency, redis.pid)
            await wallet.close()
            rows.append((name, result))
        await engine.dispose()
    finally:
        os.killpg(redis.pid, signal.SIGTERM)
        redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{a.n} hold+settle cycles, {a.concurrency} at a time (CPU microseconds per cycle; best of the box's noise "
          "is CPU time, wall time is shown for reference)")
    for name, r in rows:
        print(f"  {name:<6} gateway CPU {r['client_us']:7.1f} us   redis-server CPU {r['server_us']:6.1f} us   "
              f"wall {r['wall_us']:7.1f} us")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_redis(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit("redis-server did not start")


if __name__ == "__main__":
    if not shutil.which("redis-server"):
        sys.exit("redis-server is not installed")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=32)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(p.parse_args()))
