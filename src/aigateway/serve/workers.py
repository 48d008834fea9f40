"""N worker processes on one port: a pre-fork master with SO_REUSEPORT listeners.

Invariant: several workers never weaken "no overdraft". Holds live in the wallet; without
Redis the wallet is in the process's memory, so two workers would each see the whole balance
and concurrent requests on different workers could overdraw it. Hence more than one worker
needs `[redis] url`: workers then share holds, balances and key limits exactly as replicas do
(each worker is a replica with its own usage spool and replica id). Without Redis the default
is one worker, and asking for more is refused with one line saying why.

Why this shape:
* The master binds every listening socket (one per worker, SO_REUSEPORT, so the kernel spreads
  new connections evenly) before it forks, after checking the port with an ordinary bind, so
  "port already in use" is still reported (SO_REUSEPORT alone would silently share a port with
  a second gateway). The master keeps its copies open: connections that arrive while a crashed
  worker is restarted wait in that worker's backlog instead of being refused.
* Fork happens before any event loop, thread or connection exists (the app is built in the
  worker), so nothing half-initialised is inherited.
* Only worker 0 runs what must run once per machine: the operator console listener (one port),
  the price fetcher and the deposit watcher (their database leases would keep them to one at a
  time anyway; this spares the extra polling).
* Each worker has its own spool directory (worker 0: the configured one, so going back to one
  worker finds it; worker i: `<spool_dir>/worker-i`), because a spool is one process's
  (flock), and a restarted worker i replays exactly its own spool, once.
* Worker 0 starts first and the others once it is ready: start-up writes to the database
  (migrations, the config's prices) then happen once, not as N racing writers (on SQLite, where
  migrations take no advisory lock, two workers inserting the same price failed the start).
* SIGTERM/SIGINT to the master closes its listeners and forwards SIGTERM to every worker, which
  then runs the usual clean shutdown (final commit, spool close); the master exits when they
  have. A worker that dies is restarted (after a pause that grows while it keeps failing). If
  worker 0 fails before it was ever ready, the whole start-up stops with its error (a wrong
  config or an unreachable database should say so, not loop); once worker 0 serves, a later
  worker that fails to start is restarted like a crashed one, so the service stays up.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from aigateway.api.protocol import LISTEN_BACKLOG
from aigateway.billing.spool import SEGMENT_SUFFIX, default_spool_dir
from aigateway.config import Config

log = logging.getLogger(__name__)

WORKER_HEADER = "X-Gateway-Worker"  # which worker answered (multi-worker mode only)
RESTART_PAUSE = 0.5  # seconds before restarting a worker that died...
RESTART_PAUSE_MAX = 30.0  # ...doubling up to this while it keeps dying within STABLE seconds
STABLE = 10.0
STOP_TIMEOUT = 180.0  # seconds after SIGTERM before a worker that is still running is killed


class WorkersRefused(ValueError):
    """A worker count this deployment cannot run safely (the message says why and what to do)."""


def available_cores() -> int:
    """Cores this process may run on (taskset and cpusets count, not only the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_count(requested: int | None, config: Config, *, cores: int, demo: bool = False) -> int:
    """How many workers to run: `requested`, or by default the cores when state can be shared (Redis)."""
    shared = bool(config.redis.url)
    if requested is None:
        return cores if shared and not demo else 1
    if requested < 1:
        raise WorkersRefused("--workers must be at least 1")
    if requested > 1 and demo:
        raise WorkersRefused("--workers: the demo runs one process (its mock upstream and demo customer are "
                             "in-process); drop --workers or --demo")
    if requested > 1 and not shared:
        raise WorkersRefused(
            f"--workers {requested} needs [redis] url (or AIGATEWAY_REDIS_URL): without Redis each worker keeps "
            "holds in its own memory and concurrent requests on two workers could overdraw a balance; "
            "configure Redis, or run one worker")
    return requested


def spool_base(config: Config) -> Path:
    return Path(config.billing.spool_dir) if config.billing.spool_dir else default_spool_dir(config.database.url)


def worker_spool(base: Path, index: int) -> Path:
    return base if index == 0 else base / f"worker-{index}"


def worker_config(config: Config, index: int) -> Config:
    """Worker `index`'s config: its own spool; jobs that run once per machine only on worker 0."""
    own = config.model_copy(deep=True)
    own.billing.spool_dir = str(worker_spool(spool_base(config), index))
    if index > 0:
        own.admin = {**own.admin, "enabled": False}
        own.pricing = {**own.pricing, "fetch": False}
        if own.deposits:
            own.deposits = {**own.deposits, "run_watcher": False}
    return own


def orphan_spools(config: Config, workers: int) -> list[Path]:
    """Spool directories of workers beyond `workers` that still hold uncommitted usage."""
    base = spool_base(config)
    found = []
    for path in sorted(base.glob("worker-*")) if base.is_dir() else []:
        suffix = path.name.removeprefix("worker-")
        if suffix.isdigit() and int(suffix) >= workers and any(path.glob("*" + SEGMENT_SUFFIX)):
            found.append(path)
    return found


def listeners(host: str, port: int, count: int, backlog: int = LISTEN_BACKLOG) -> list[socket.socket]:
    """`count` SO_REUSEPORT sockets on host:port; OSError EADDRINUSE if anything else holds the port."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:  # an ordinary bind: fails if anyone (a second gateway with SO_REUSEPORT too) has the port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        address = probe.getsockname()  # port 0: the port the system chose, for every worker
    finally:
        probe.close()
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def _die_with_parent() -> None:
    """A worker gets SIGTERM if the master dies (even by kill -9): it never serves orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Slot:
    index: int
    pid: int = 0
    started: float = 0.0
    ready: bool = False
    ready_fd: int = -1
    pause: float = RESTART_PAUSE
    restart_at: float | None = None


@dataclass
class Master:
    """Forks `count` workers (each runs `run_worker(index, sock, ready)`), restarts one that
    dies, and stops them all on SIGTERM/SIGINT."""

    count: int
    socks: list[socket.socket]
    run_worker: Callable[[int, socket.socket, Callable[[], None]], None]
    describe_error: Callable[[BaseException], str] = str
    slots: list[_Slot] = field(default_factory=list)
    all_started: bool = False  # every worker has been ready once (logged once)
    serving: bool = False  # worker 0 has been ready once: from then on a dead worker is restarted
    _stopping: bool = False

    def run(self) -> int:
        """Returns the exit status: 0 after a clean stop, 1 when a worker could not start."""
        self.slots = [_Slot(i) for i in range(self.count)]
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._spawn(self.slots[0])  # the others once it is ready: see _supervise
            status = self._supervise()
            self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self._stopping = True

    def _spawn(self, slot: _Slot) -> None:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            self._child(slot.index, write_fd)
        os.close(write_fd)
        slot.pid, slot.started, slot.ready, slot.ready_fd, slot.restart_at = pid, time.monotonic(), False, read_fd, None
        log.info("worker %d started (pid %d)", slot.index, pid)

    def _child(self, index: int, ready_fd: int) -> None:
        status = 1
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            _die_with_parent()
            for i, sock in enumerate(self.socks):
                if i != index:
                    sock.close()

            def ready() -> None:
                os.write(ready_fd, b"r")
                os.close(ready_fd)

            self.run_worker(index, self.socks[index], ready)
            status = 0
        except BaseException as exc:  # noqa: BLE001 - a worker reports any failure as one line, then exits
            print(f"aigateway worker {index}: {self.describe_error(exc)}", file=sys.stderr, flush=True)
        finally:
            logging.shutdown()
            os._exit(status)

    def _supervise(self) -> int:
        while not self._stopping:
            self._collect_ready()
            for slot in self._reap():
                # Before anything serves (worker 0 not ready yet) a failure is the config's: stop with
                # its error. Once worker 0 serves, a later worker that fails to start (e.g. the database
                # went away at that moment) is restarted like a crashed one: the service stays up.
                if not self.serving:
                    log.error("worker %d exited before any worker was ready: stopping", slot.index)
                    return 1
                quick = time.monotonic() - slot.started < STABLE
                slot.pause = min(slot.pause * 2, RESTART_PAUSE_MAX) if quick else RESTART_PAUSE
                slot.restart_at = time.monotonic() + slot.pause
                log.error("worker %d died; restarting it in %.1f s", slot.index, slot.pause)
            if self.slots[0].ready:
                self.serving = True
            if self.slots[0].ready and not any(s.pid or s.started for s in self.slots[1:]):
                for slot in self.slots[1:]:
                    self._spawn(slot)
            if not self.all_started and all(s.ready for s in self.slots):
                self.all_started = True
                log.info("all %d workers ready", self.count)
            now = time.monotonic()
            for slot in self.slots:
                if not slot.pid and slot.restart_at is not None and now >= slot.restart_at:
                    self._spawn(slot)
            time.sleep(0.1)
        return 0

    def _collect_ready(self) -> None:
        fds = [s.ready_fd for s in self.slots if s.pid and not s.ready and s.ready_fd >= 0]
        if not fds:
            return
        readable, _, _ = select.select(fds, [], [], 0)
        for slot in self.slots:
            if slot.ready_fd in readable:
                with contextlib.suppress(OSError):
                    if os.read(slot.ready_fd, 1):
                        slot.ready = True
                        if self.all_started:
                            log.info("worker %d ready again (pid %d)", slot.index, slot.pid)
                self._close_ready(slot)

    def _close_ready(self, slot: _Slot) -> None:
        if slot.ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(slot.ready_fd)
            slot.ready_fd = -1

    def _reap(self) -> list[_Slot]:
        """Slots whose worker has exited (waitpid without blocking)."""
        gone: list[_Slot] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return gone
            if pid == 0:
                return gone
            for slot in self.slots:
                if slot.pid == pid:
                    self._collect_ready()
                    self._close_ready(slot)
                    code = os.waitstatus_to_exitcode(status)
                    log.log(logging.INFO if code == 0 and self._stopping else logging.WARNING,
                            "worker %d (pid %d) exited with status %d", slot.index, pid, code)
                    slot.pid = 0
                    gone.append(slot)

    def _shutdown(self) -> None:
        for sock in self.socks:  # no new connection is queued for a worker that is stopping
            sock.close()
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(s.pid for s in self.slots):
            self._reap()
            if time.monotonic() > deadline:
                for slot in self.slots:
                    if slot.pid:
                        log.error("worker %d (pid %d) still running %.0f s after SIGTERM: killing it",
                                  slot.index, slot.pid, STOP_TIMEOUT)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(slot.pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.05)
        for slot in self.slots:
            self._close_ready(slot)
        log.info("all workers stopped")


def _label_logs(index: int) -> None:
    """Every log line of worker `index` says so (the master's lines say nothing)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [worker {index}] %(name)s: %(message)s"))


def _worker_header(label: str) -> Callable[[web.Request, web.StreamResponse], Any]:
    async def add(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers[WORKER_HEADER] = label

    return add


def run_workers(config: Config, count: int, *, describe_error: Callable[[BaseException], str] = str,
                access_log: logging.Logger | None = None) -> int:
    """Serve with `count` worker processes until SIGTERM/SIGINT; the exit status (see Master.run)."""
    for path in orphan_spools(config, count):
        log.warning("%s holds usage that no worker of this start replays: start once with more workers "
                    "(--workers %s) so it is committed; with Redis its charges keep counting meanwhile",
                    path, int(path.name.removeprefix("worker-")) + 1)
    socks = listeners(config.server.host, config.server.port, count)
    port = socks[0].getsockname()[1]
    log.info("aigateway on %s:%d: %d workers (SO_REUSEPORT), holds shared through Redis", config.server.host,
             port, count)

    def run_worker(index: int, sock: socket.socket, ready: Callable[[], None]) -> None:
        from aigateway.api.protocol import run_app
        from aigateway.app import create_app

        _label_logs(index)
        app = create_app(worker_config(config, index))
        app.on_response_prepare.append(_worker_header(str(index)))
        run_app(app, sock=sock, ready=ready, access_log=access_log, handler_cancellation=False)

    return Master(count, socks, run_worker, describe_error).run()
