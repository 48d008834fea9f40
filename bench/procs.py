"""Start/stop pinned processes by PID, and sample their CPU and memory from /proc."""
from __future__ import annotations

import atexit
import os
import resource
import signal
import subprocess
import threading
import time

TARGET_CPU = 0   # gateways and their database
LOAD_CPU = 1     # mock upstream, load generators and this harness
SATURATED = 0.90  # harness processes above this share of the load core flag the run
NOISY = 0.25      # CPU (in cores) used by processes that are not ours flags the run
_TICK = os.sysconf("SC_CLK_TCK")


class Procs:
    """Every process the harness starts; all stopped by PID (process group) on exit."""

    def __init__(self) -> None:
        self.items: list[tuple[subprocess.Popen, int, str]] = []
        atexit.register(self.stop_all)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        self.stop_all()
        raise SystemExit(128 + signum)

    def start(self, name: str, cmd: list[str], cpu: int, log: str, env: dict | None = None,
              stop_signal: int = signal.SIGTERM, user: str | None = None, cwd: str | None = None):
        pre = ["taskset", "-c", str(cpu)]
        if user:
            pre = ["runuser", "-u", user, "--"] + pre
        logf = open(log, "ab")
        p = subprocess.Popen(pre + cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                             cwd=cwd, start_new_session=True)
        logf.close()
        self.items.append((p, stop_signal, name))
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 10.0) -> None:
        for item in list(self.items):
            if item[0] is p:
                self.items.remove(item)
                _stop_group(p, item[1], timeout)

    def stop_all(self) -> None:
        while self.items:
            p, sig, _ = self.items.pop()
            _stop_group(p, sig, 10.0)


def _stop_group(p: subprocess.Popen, sig: int, timeout: float) -> None:
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)   # the group we created with start_new_session
    except ProcessLookupError:
        return
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(5)


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pids: list[int]) -> list[int]:
    """pids plus all their descendants."""
    kids, out, todo = children_map(), [], list(pids)
    while todo:
        p = todo.pop()
        if p not in out:
            out.append(p)
            todo.extend(kids.get(p, []))
    return out


def pss_each_kib(pids: list[int]) -> list[int]:
    """PSS of each process of the trees (a master and its workers: one entry each)."""
    out = []
    for p in tree(pids):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for ln in f:
                    if ln.startswith("Pss:"):
                        out.append(int(ln.split()[1]))
                        break
        except OSError:
            pass
    return out


def pss_kib(pids: list[int]) -> int:
    return sum(pss_each_kib(pids))


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for p in tree(pids):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])   # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def core_busy() -> dict[int, tuple[int, int]]:
    """Per core: (busy jiffies, total jiffies) from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for ln in f:
            if ln.startswith("cpu") and ln[3].isdigit():
                name, *vals = ln.split()
                v = [int(x) for x in vals[:8]]
                out[int(name[3:])] = (sum(v) - v[3] - v[4], sum(v))
    return out


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Sampler:
    """Context manager measuring, over its lifetime: CPU of the target tree and of
    the harness (long-lived harness_pids plus load generators reaped inside the
    window), busy fraction of each core, and peak PSS of the target tree."""

    def __init__(self, target_pids: list[int], harness_pids: list[int],
                 db_pids: list[int] | None = None, every: float = 0.5):
        self.t, self.h, self.db, self.every = target_pids, harness_pids, db_pids or [], every
        self.peak_pss = 0
        self.peak_proc_pss = 0   # the largest single process (with several workers: one worker)
        self._stop = threading.Event()

    def __enter__(self):
        self.t0 = time.monotonic()
        self.c0 = core_busy()
        self.tc0, self.hc0, self.dc0 = cpu_ticks(self.t), cpu_ticks(self.h), cpu_ticks(self.db)
        self.ru0, self.self0 = _children_cpu(), _self_cpu()
        self._th = threading.Thread(target=self._loop, daemon=True)
        self._th.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.every):
            each = pss_each_kib(self.t) if self.t else []
            self.peak_pss = max(self.peak_pss, sum(each))
            self.peak_proc_pss = max([self.peak_proc_pss, *each])

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join()
        wall = time.monotonic() - self.t0
        c1 = core_busy()
        # long-lived harness processes (the mock) from /proc; load generators that
        # exited inside the window from the rusage of reaped children
        harness = (cpu_ticks(self.h) - self.hc0) / _TICK + (_children_cpu() - self.ru0)
        target = (cpu_ticks(self.t) - self.tc0) / _TICK if self.t else 0.0
        db = (cpu_ticks(self.db) - self.dc0) / _TICK if self.db else 0.0
        busy = {c: (c1[c][0] - self.c0[c][0]) / max(1, c1[c][1] - self.c0[c][1])
                for c in c1 if c in self.c0}
        ours = (harness + target + db + _self_cpu() - self.self0) / wall
        self._res = {
            "target_cpu": target / wall,
            "db_cpu": db / wall,
            "harness_cpu": harness / wall,
            "core_busy": busy,
            # everything else: other users' processes, plus kernel network work
            "foreign_cpu": max(0.0, sum(busy.values()) - ours),
            "peak_pss_kib": self.peak_pss,
            "peak_proc_pss_kib": self.peak_proc_pss,
        }
        return False

    def result(self) -> dict:
        r = dict(self._res)
        r["harness_saturated"] = r["harness_cpu"] > SATURATED
        r["noisy"] = r["foreign_cpu"] > NOISY
        return r


def foreign_load(seconds: float = 3.0) -> float:
    """CPU (in cores) used by everything but this process tree, e.g. other users' jobs."""
    c0, me0 = core_busy(), _self_cpu() + _children_cpu()
    mine = tree([os.getpid()])
    t0 = cpu_ticks(mine)
    time.sleep(seconds)
    c1 = core_busy()
    busy = sum((c1[c][0] - c0[c][0]) / max(1, c1[c][1] - c0[c][1]) for c in c1 if c in c0)
    ours = (cpu_ticks(mine) - t0) / _TICK + (_self_cpu() + _children_cpu() - me0)
    return max(0.0, busy - ours / seconds)


def wait_idle(pids: list[int], limit: float = 15.0, below: float = 0.05) -> float:
    """Wait until the target tree uses < `below` of a core (it may still be finishing
    requests left over from the previous test). Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        a = cpu_ticks(pids)
        time.sleep(0.3)
        if (cpu_ticks(pids) - a) / _TICK / 0.3 < below:
            break
    return time.monotonic() - t0
