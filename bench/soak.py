"""Memory soak: our gateway (production profile, billing on) under steady load.

    .venv/bin/python bench/soak.py [--seconds 300] [--conns 32] [--every 10] [--db sqlite|postgres]

Reuses the harness: the nginx mock and wrk on core 1, our gateway on core 0,
customer and key created as run.py does.  wrk runs at fixed concurrency on the
0 ms chat route while the PSS of the gateway's process tree is sampled.  Reports
first/last/max PSS and a least-squares slope (MiB per minute) over the samples
after the warm-up; "flat" when |slope| * 5 min < 5 MiB.  With --gate, the ledger gate.
Exit status 1 when the gate fails or memory is not flat.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gate  # noqa: E402
import mock  # noqa: E402
import wrk  # noqa: E402
from postgres import Postgres  # noqa: E402
from procs import pss_kib, wait_idle  # noqa: E402
from run import Bench, Settings  # noqa: E402
from targets import Ours, expected_costs  # noqa: E402

FLAT_MIB = 5.0        # allowed drift over FLAT_WINDOW minutes
FLAT_WINDOW = 5.0


def slope_mib_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) points, in MiB per minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(m for _, m in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (m - my) for t, m in points)
    return (sxy / sxx) * 60 if sxx else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=300, help="length of the load (wrk -d)")
    p.add_argument("--conns", type=int, default=32, help="wrk connections")
    p.add_argument("--every", type=float, default=10, help="seconds between PSS samples")
    p.add_argument("--warmup", type=float, default=60, help="seconds left out of the slope")
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--nice", type=int, default=-10)
    p.add_argument("--wait-quiet", type=float, default=60)
    p.add_argument("--out", default=None)
    p.add_argument("--gate", action="store_true",
                   help="run the ledger gate at the end")
    a = p.parse_args()
    a.max_minutes = a.seconds / 60 + 10   # what Bench expects
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = a.out or os.path.join(HERE, "out", f"soak-{stamp}")
    os.makedirs(out, exist_ok=True)

    b = Bench(a, Settings(), out)
    os.sched_setaffinity(0, {1})
    if a.nice:
        os.setpriority(os.PRIO_PROCESS, 0, a.nice)
    b.wait_quiet()
    mock_base = b.start_mock()
    if a.db == "postgres":
        pg = Postgres(b.procs, b.tmp, mock.free_port())
        pg.start(os.path.join(out, "postgres.log"))
        db = pg.createdb("aigw_soak").replace("postgresql://", "postgresql+asyncpg://")
        db_pids = [pg.pid]
    else:
        db = f"sqlite+aiosqlite:///{b.tmp}/aigw-soak.db"
        db_pids = []
    t = Ours("production", mock.free_port(), mock_base, db, b.tmp)
    print("starting ours (production, billing on) ...", flush=True)
    t.start(b.procs, os.path.join(out, "ours-production.log"))
    if t.na:
        print(f"ours: N/A: {t.na}", flush=True)
        return 1
    t.db_pids = db_pids
    time.sleep(2)
    wait_idle(t.pids)

    res: dict = {}

    def load():
        try:
            res["wrk"] = wrk.run(t.chat_url("zero"), b.bodies["zero"], t.token, a.conns, a.seconds,
                                 t.pids, b.harness_pids, db_pids)
        except Exception as e:   # noqa: BLE001  reported below
            res["error"] = str(e)[:500]

    samples: list[tuple[float, int]] = [(0.0, pss_kib(t.pids))]
    print(f"wrk -c{a.conns} -d{a.seconds}s on the 0 ms route; PSS every {a.every:g} s", flush=True)
    print(f"  t={0:>5.0f}s  PSS {samples[0][1] / 1024:7.1f} MiB  (before load)", flush=True)
    th = threading.Thread(target=load, daemon=True)
    t0 = time.monotonic()
    th.start()
    k = 1
    while th.is_alive():
        th.join(max(0.0, t0 + k * a.every - time.monotonic()))
        if not th.is_alive():
            break
        s = (time.monotonic() - t0, pss_kib(t.pids))
        samples.append(s)
        print(f"  t={s[0]:>5.0f}s  PSS {s[1] / 1024:7.1f} MiB", flush=True)
        k += 1
    time.sleep(2)   # the gateway group-commits usage rows; let it flush
    after = pss_kib(t.pids)

    mib = [(ts, kib / 1024) for ts, kib in samples]
    under_load = [m for ts, m in mib if ts > 0]
    steady = [(ts, m) for ts, m in mib if ts > a.warmup]
    slope = slope_mib_per_min(steady)
    flat = slope is not None and abs(slope) * FLAT_WINDOW < FLAT_MIB
    summary = {
        "date": datetime.date.today().isoformat(),
        "command": "bench/soak.py " + " ".join(sys.argv[1:]),
        "db": a.db, "conns": a.conns, "seconds": a.seconds, "every": a.every, "warmup": a.warmup,
        "samples": len(samples), "samples_in_slope": len(steady),
        "pss_before_load_mib": round(mib[0][1], 1),
        "pss_first_mib": round(under_load[0], 1) if under_load else None,
        "pss_last_mib": round(under_load[-1], 1) if under_load else None,
        "pss_max_mib": round(max(under_load), 1) if under_load else None,
        "pss_after_load_mib": round(after / 1024, 1),
        "slope_mib_per_min": round(slope, 3) if slope is not None else None,
        "verdict": "flat" if flat else "NOT flat",
        "rule": f"flat when |slope| * {FLAT_WINDOW:g} min < {FLAT_MIB:g} MiB, slope by least squares "
                f"over the samples after the first {a.warmup:g} s",
    }
    w = res.get("wrk")
    if w:
        summary.update(requests_ok=w["ok"], rps=round(w["rps"], 1), error_rate=w["error_rate"],
                       p50_ms=w.get("p50_us", 0) / 1000, p99_ms=w.get("p99_us", 0) / 1000,
                       target_cpu=round(w["target_cpu"], 2), foreign_cpu=round(w["foreign_cpu"], 2),
                       harness_saturated=w["harness_saturated"])
    if w and a.gate:
        g = gate.check(t.db_url, expected_costs(), {"bench-zero": w["ok"]},
                       {"bench-zero": w["unfinished_max"]})
        summary["gate"] = {"passed": g["passed"], "problems": g["problems"],
                           "billed_rows": g["billed_rows"], "charges": g["charges"]}
    elif w:
        summary["gate"] = "skipped (use --gate)"
    else:
        summary["error"] = res.get("error", "wrk gave no result")
    t.stop(b.procs)
    b.procs.stop_all()

    with open(os.path.join(out, "soak.json"), "w") as f:
        json.dump({"summary": summary, "samples": samples}, f, indent=1)
    print()
    for key in ("samples", "samples_in_slope", "pss_before_load_mib", "pss_first_mib", "pss_last_mib",
                "pss_max_mib", "pss_after_load_mib", "slope_mib_per_min", "requests_ok", "rps",
                "error_rate", "p50_ms", "p99_ms", "target_cpu", "foreign_cpu", "harness_saturated"):
        if key in summary:
            print(f"{key:>20}: {summary[key]}")
    print(f"{'verdict':>20}: {summary['verdict']}  (rule: {summary['rule']})")
    if isinstance(summary.get("gate"), str):
        print(f"{'ledger gate':>20}: {summary['gate']}")
    elif "gate" in summary:
        gs = summary["gate"]
        print(f"{'ledger gate':>20}: {'PASS' if gs['passed'] else 'FAIL'} "
              f"({gs['billed_rows']} billed rows, {gs['charges']} charges) {'; '.join(gs['problems'])}")
    else:
        print(f"{'error':>20}: {summary['error']}")
    print("SOAKJSON " + json.dumps(summary, separators=(",", ":")))
    print(f"\noutput: {out}")
    gs = summary.get("gate")
    ok = flat and "error" not in summary and (not isinstance(gs, dict) or gs["passed"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
