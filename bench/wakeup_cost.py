"""What one wake-up of a sleeping process costs on this machine, on one core and across cores.

    .venv/bin/python bench/wakeup_cost.py

Two processes pass one byte back and forth over a socketpair (each blocks in recv until the
other writes): a round trip is two wake-ups. Both on core 0, then one on core 0 and one on core 1. A request at
c=1 through any proxy wakes processes on the other core several times (the load generator's
request, the upstream's answer, the reply), so this is the part of the added latency that no
gateway code can remove. On this project's 2-core VM the cross-core figure is several times the
same-core one; bench/RESULTS.md (2026-12-03, 17:22) has the numbers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

ROUND_TRIPS = 5000


def ping_pong(cores: list[int]) -> None:
    """One side on cores[0], the other on cores[-1]."""
    a, b = socket.socketpair()
    os.sched_setaffinity(0, {cores[0]})
    child = os.fork()
    if child == 0:
        os.sched_setaffinity(0, {cores[-1]})
        for _ in range(ROUND_TRIPS):
            b.recv(1)
            b.send(b"y")
        os._exit(0)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(ROUND_TRIPS):
        a.send(b"x")
        a.recv(1)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    os.waitpid(child, 0)
    print(f"{wall / ROUND_TRIPS * 1e6:.1f} {cpu / ROUND_TRIPS * 1e6:.1f}")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        ping_pong([int(c) for c in sys.argv[2].split(",")])
        return
    for label, cores in (("one core", "0"), ("two cores", "0,1")):
        best: tuple[float, float] | None = None
        for _ in range(3):
            out = subprocess.run([sys.executable, __file__, "--child", cores],
                                 capture_output=True, text=True, check=True, timeout=120).stdout.split()
            wall, cpu = float(out[0]), float(out[1])
            best = (wall, cpu) if best is None or wall < best[0] else best
        assert best is not None
        print(f"{label:9}: round trip {best[0]:6.1f} µs wall, {best[1]:5.1f} µs CPU of one side (best of 3)")


if __name__ == "__main__":
    main()
