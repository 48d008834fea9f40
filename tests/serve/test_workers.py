"""`aigateway serve --workers N`: N processes on one port, sharing holds through Redis.

A real `aigateway serve --workers 2` process against one PostgreSQL database and one Redis
(a private key prefix): concurrent requests against a balance that fits only some holds, both
workers answering, no balance below zero, balance == ledger sum, every answer charged once,
a killed worker restarted, SIGTERM stopping everything with nothing left in any spool, and
`admin reconcile` saying ok. Without Redis, more than one worker is refused (holds would be
per process and could overdraw a balance) and the default is one worker.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import ClientSession, ClientTimeout, TCPConnector

from aigateway.accounts.service import create_customer, create_key
from aigateway.api.protocol import LISTEN_BACKLOG
from aigateway.billing.ledger import post_entry
from aigateway.config import Config
from aigateway.money import request_cost, to_units
from aigateway.serve.workers import WORKER_HEADER, WorkersRefused, worker_config, worker_count
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade
from tests.billing.test_spool_faults import _billing
from tests.support.servers import free_port
from tests.support.waits import wait_until

AIGATEWAY = str(Path(sys.executable).with_name("aigateway"))
IN, OUT = 350_000, 1_400_000  # units per 1M tokens: the models' 0.35 / 1.40 TMT
HOLDS_THAT_FIT = 10
REQUESTS = 60


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIGATEWAY_")}


class Served:
    """`aigateway serve` as a real process (the master, when --workers > 1)."""

    def __init__(self, tmp: Path, db_url: str, upstream: str, redis_url: str | None = None,
                 prefix: str = "") -> None:
        self.port = free_port()
        self.spool = tmp / "spool"
        self.config = tmp / "aigateway.toml"
        redis_section = f'[redis]\nurl = "{redis_url}"\nkey_prefix = "{prefix}"\n' if redis_url else ""
        self.config.write_text(f"""
discover_ollama = false
[server]
host = "127.0.0.1"
port = {self.port}
[database]
url = "{db_url}"
{redis_section}
[billing]
flush_interval = 0.02
spool_dir = "{self.spool}"
[admin]
port = 0
[providers.mock]
base_url = "{upstream}/v1"
[[models]]
name = "llama-3.1-70b"
input_price = "0.35"
output_price = "1.40"
max_output_tokens = 1024
context_length = 8192
routes = [{{ provider = "mock", model = "mock-chat" }}]
[[models]]
name = "mock-slow"
input_price = "0.35"
output_price = "1.40"
max_output_tokens = 1024
context_length = 8192
routes = [{{ provider = "mock", model = "mock-chat-slow" }}]
""")
        self.log = tmp / "serve.log"
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([AIGATEWAY, "--config", str(self.config), *args], capture_output=True, text=True,
                              timeout=timeout, env=_env())

    def start(self, *args: str) -> Served:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen([AIGATEWAY, "--config", str(self.config), "serve", *args],
                                         stdout=log, stderr=subprocess.STDOUT, env=_env())
        return self

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 60) -> list[str]:
        def seen():
            assert self.proc.poll() is None, self.text()[-3000:]
            found = re.findall(pattern, self.text())
            return found if len(found) >= count else None

        return wait_until(seen, timeout=timeout, what=f"{pattern!r} x{count} in the log")

    def worker_pids(self) -> dict[int, int]:
        """The latest pid of each worker, from the master's log."""
        return {int(i): int(pid) for i, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", self.text())}

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.worker_pids().values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


async def _customer(db_url: str, email: str, credit: int | None) -> tuple[int, str]:
    engine = create_engine(db_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        cid = await create_customer(conn, email)
        if credit:
            await post_entry(conn, customer_id=cid, amount=credit, kind="credit", reference=f"credit:{email}")
        _, key = await create_key(conn, cid, "workers")
    await engine.dispose()
    return cid, key.secret


async def _fire(base: str, key: str, n: int, model: str) -> list[tuple[int, str | None, str | None, dict]]:
    """n concurrent chat requests, each on its own connection (so the kernel spreads them over
    the workers); (status, worker header, request id, body) each."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 24}

    async with ClientSession(connector=TCPConnector(limit=0, force_close=True),
                             timeout=ClientTimeout(total=60)) as session:
        async def one() -> tuple[int, str | None, str | None, dict]:
            async with session.post(f"{base}/v1/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {key}"}) as r:
                return r.status, r.headers.get(WORKER_HEADER), r.headers.get("X-Request-Id"), await r.json()

        return await asyncio.gather(*(one() for _ in range(n)))


def fire(base: str, key: str, n: int, model: str):
    return asyncio.run(_fire(base, key, n, model))


def listen_backlogs(port: int) -> list[int]:
    """The accept queue size of each socket listening on the port (`ss`: Send-Q of a LISTEN row)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[2]) for line in out.splitlines() if line.startswith("LISTEN")]


def test_two_workers_share_holds_restart_and_stop_clean(pg_url, redis_url, prefix, mock_upstream, tmp_path):
    served = Served(tmp_path, pg_url, mock_upstream.url, redis_url, prefix)
    _, probe = asyncio.run(_customer(pg_url, "probe@example.com", None))
    served.start("--workers", "2", "--log-level", "INFO")
    try:
        served.wait_for(r"all 2 workers ready")
        assert len(re.findall(r"operator console on", served.text())) == 1  # worker 0 only
        assert listen_backlogs(served.port) == [LISTEN_BACKLOG] * 2  # one SO_REUSEPORT socket each

        [(status, _, _, refusal)] = fire(served.base, probe, 1, "mock-slow")
        assert status == 402
        hold = to_units(re.search(r"may cost up to ([0-9.]+) TMT", refusal["error"]["message"]).group(1))
        start = HOLDS_THAT_FIT * hold + hold // 2
        cid, key = asyncio.run(_customer(pg_url, "race@example.com", start))

        # Every slow request is in flight at once: only the holds that fit pass, on whichever
        # worker they land. Separate in-process wallets would let each worker pass 10.
        slow = fire(served.base, key, REQUESTS, "mock-slow")
        fast = fire(served.base, key, REQUESTS, "llama-3.1-70b")
        results = slow + fast
        statuses = [r[0] for r in results]
        assert set(statuses) <= {200, 402}, statuses
        assert 1 <= sum(r[0] == 200 for r in slow) <= HOLDS_THAT_FIT
        assert statuses.count(402) >= REQUESTS - HOLDS_THAT_FIT
        assert {r[1] for r in results} == {"0", "1"}  # both workers answered
        # (Which worker wins the holds that fit depends on timing: all of them may go to one.)

        # A worker killed while idle (its answers committed: kill -9 loses what the last flush
        # interval had not yet spooled, see Billing rules) is restarted and serves again.
        ids = [r[2] for r in results if r[0] == 200]
        wait_until(lambda: all(asyncio.run(_billing(pg_url, cid, ids))["charges"].get(f"usage:{i}") for i in ids),
                   timeout=10, what="every answer committed")
        old = served.worker_pids()[1]
        os.kill(old, signal.SIGKILL)
        served.wait_for(r"worker 1 ready again")
        assert served.worker_pids()[1] != old and not _alive(old)
        assert len(re.findall(r"operator console on", served.text())) == 1
        cid2, key2 = asyncio.run(_customer(pg_url, "after@example.com", to_units("1")))
        after = []
        for _ in range(20):  # new connections until worker 1 answered some
            after += fire(served.base, key2, 10, "llama-3.1-70b")
            if {r[1] for r in after} == {"0", "1"}:
                break
        assert {r[1] for r in after} == {"0", "1"} and {r[0] for r in after} == {200}

        pids = served.worker_pids()
        assert served.stop() == 0
        wait_until(lambda: not any(_alive(p) for p in pids.values()), timeout=10, what="workers gone")
    finally:
        served.kill()

    assert "Traceback" not in served.text(), served.text()[-3000:]
    assert sorted(str(p) for p in served.spool.rglob("*.spool")) == []  # every spool committed and empty
    assert (served.spool / "worker-1" / "replica-id").exists()  # worker 1 had its own spool
    for customer, answers, credit in ((cid, results, start), (cid2, after, to_units("1"))):
        ids = [r[2] for r in answers if r[0] == 200]
        billing = asyncio.run(_billing(pg_url, customer, ids))
        costs = [request_cost(r[3]["usage"]["prompt_tokens"], r[3]["usage"]["completion_tokens"], IN, OUT)
                 for r in answers if r[0] == 200]
        assert [billing["charges"].get(f"usage:{i}") for i in ids] == [[-c] for c in costs]  # each once
        assert billing["balance"] == billing["ledger"] == credit - sum(costs)
        assert billing["balance"] >= 0 and billing["negative"] == 0
    result = served.cli("admin", "reconcile")
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stdout + result.stderr


def test_two_workers_on_sqlite_with_redis_start_one_after_the_other(redis_url, prefix, mock_upstream, tmp_path):
    """Worker 0 migrates and applies the config's prices before the others start (on SQLite two
    workers starting together both inserted the same price and one start failed)."""
    db_url = f"sqlite+aiosqlite:///{tmp_path}/gw.db"
    served = Served(tmp_path, db_url, mock_upstream.url, redis_url, prefix)
    served.start("--workers", "2", "--log-level", "INFO")
    try:
        served.wait_for(r"all 2 workers ready")
        text = served.text()
        assert text.index("[worker 0] aigateway: aigateway ready") < text.index("worker 1 started")
        _, key = asyncio.run(_customer(db_url, "lite@example.com", to_units("1")))
        answers = fire(served.base, key, 20, "llama-3.1-70b")
        assert {r[0] for r in answers} == {200}
        assert served.stop() == 0
    finally:
        served.kill()
    billing = asyncio.run(_billing(db_url, 1, [r[2] for r in answers]))
    assert all(billing["charges"].get(f"usage:{r[2]}") for r in answers)
    assert billing["balance"] == billing["ledger"] >= 0


def test_workers_stop_cleanly_when_the_master_is_killed(redis_url, prefix, mock_upstream, tmp_path):
    """kill -9 of the master: its workers get SIGTERM from the kernel and shut down cleanly (every
    answer committed, spools empty), instead of serving on as orphans."""
    db_url = f"sqlite+aiosqlite:///{tmp_path}/gw.db"
    served = Served(tmp_path, db_url, mock_upstream.url, redis_url, prefix)
    served.start("--workers", "2", "--log-level", "INFO")
    try:
        served.wait_for(r"all 2 workers ready")
        _, key = asyncio.run(_customer(db_url, "orphan@example.com", to_units("1")))
        answers = fire(served.base, key, 20, "llama-3.1-70b")
        assert {r[0] for r in answers} == {200}
        pids = served.worker_pids()
        served.proc.kill()
        served.proc.wait(10)
        wait_until(lambda: not any(_alive(p) for p in pids.values()), timeout=30, what="workers gone")
    finally:
        served.kill()
    assert sorted(str(p) for p in served.spool.rglob("*.spool")) == []
    billing = asyncio.run(_billing(db_url, 1, [r[2] for r in answers]))
    assert all(billing["charges"].get(f"usage:{r[2]}") for r in answers)
    assert billing["balance"] == billing["ledger"] >= 0


def test_more_than_one_worker_without_redis_is_refused(tmp_path, mock_upstream):
    served = Served(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/gw.db", mock_upstream.url)
    result = subprocess.run([AIGATEWAY, "--config", str(served.config), "serve", "--workers", "2"],
                            capture_output=True, text=True, timeout=60, env=_env())
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers 2 needs [redis] url" in lines[0] and "overdraw" in lines[0], lines
    assert "Traceback" not in result.stderr


def test_without_redis_the_default_is_one_process(tmp_path, mock_upstream):
    served = Served(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/gw.db", mock_upstream.url)
    _, key = asyncio.run(_customer(f"sqlite+aiosqlite:///{tmp_path}/gw.db", "one@example.com", to_units("1")))
    served.start("--log-level", "INFO")
    try:
        # (Not "aigateway ready": start-up logs it before the port listens; CI once connected in between.)
        served.wait_for(rf"listening on http://127\.0\.0\.1:{served.port}")
        answers = fire(served.base, key, 4, "llama-3.1-70b")
        assert [r[0] for r in answers] == [200] * 4
        assert {r[1] for r in answers} == {None}  # no worker header: the one process answers
        # Not aiohttp's 128: a burst of new connections to a busy loop overflowed it, and every
        # dropped SYN waited out TCP's 1-3-7 s retransmit back-off (bench/ streams_1k).
        assert listen_backlogs(served.port) == [LISTEN_BACKLOG]
        assert "workers" not in served.text()
        assert served.stop() == 0
    finally:
        served.kill()


def test_port_in_use_is_one_line(pg_url, redis_url, prefix, mock_upstream, tmp_path):
    served = Served(tmp_path, pg_url, mock_upstream.url, redis_url, prefix)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", served.port))
        taken.listen()
        result = served.cli("serve", "--workers", "2")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: port {served.port} on 127.0.0.1 is already in use: stop what uses it, or choose another with "
        "`aigateway serve --port N` (or AIGATEWAY_PORT=N)"]


def test_worker_count_and_each_workers_config():
    plain = Config.model_validate({"discover_ollama": False})
    shared = Config.model_validate({"redis": {"url": "redis://127.0.0.1:6379/0"}, "deposits": {"xpub": "x"},
                                    "billing": {"spool_dir": "/var/spool/gw"}})
    assert worker_count(None, plain, cores=8) == 1  # no Redis: one process by default
    assert worker_count(None, shared, cores=8) == 8  # Redis: every core
    assert worker_count(None, shared, cores=8, demo=True) == 1
    assert worker_count(3, shared, cores=8) == 3 and worker_count(1, plain, cores=8) == 1
    for bad, config in ((2, plain), (0, shared), (2, Config.model_validate({}))):
        with pytest.raises(WorkersRefused):
            worker_count(bad, config, cores=8)
    first, second = worker_config(shared, 0), worker_config(shared, 1)
    assert first.billing.spool_dir == "/var/spool/gw" and second.billing.spool_dir == "/var/spool/gw/worker-1"
    assert first.admin == {} and second.admin == {"enabled": False}
    assert "fetch" not in first.pricing and second.pricing == {"fetch": False}
    assert second.deposits == {"xpub": "x", "run_watcher": False} and first.deposits == {"xpub": "x"}
    assert worker_config(plain, 1).deposits == {}  # not configured stays not configured
    assert shared.billing.spool_dir == "/var/spool/gw"  # the original is left as it was
