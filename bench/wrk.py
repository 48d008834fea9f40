"""Run wrk (closed loop, fixed connection count) on the load core; parse its JSON."""
from __future__ import annotations

import json
import os
import subprocess

from procs import LOAD_CPU, Sampler

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "wrk_post.lua")


def run(url: str, body_file: str, token: str, conns: int, seconds: float,
        target_pids: list[int], harness_pids: list[int], db_pids: list[int] | None = None) -> dict:
    """One wrk run. Returns wrk's numbers plus rps, error rate and CPU/memory samples.

    `ok` counts 2xx/3xx responses; `unfinished_max` bounds requests that were in
    flight when wrk stopped or hit a socket error (the target may still complete
    and bill them), which the ledger gate needs.
    """
    cmd = ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-c{conns}",
           f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", SCRIPT, url]
    env = dict(os.environ, WRK_BODY_FILE=body_file, WRK_TOKEN=token or "")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with Sampler(target_pids, harness_pids, db_pids) as smp:
        out, err = proc.communicate(timeout=seconds + 60)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip() or out.strip()}")
    r = json.loads(line[len("WRKJSON "):])
    errors = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + r["err_timeout"]
    dur = r["duration_us"] / 1e6
    r["conns"] = conns
    r["ok"] = r["requests"] - r["err_status"]
    r["rps"] = r["ok"] / dur if dur else 0.0
    r["error_rate"] = errors / max(1, r["requests"] + r["err_connect"])
    r["unfinished_max"] = conns + r["err_read"] + r["err_write"] + r["err_timeout"]
    r.update(smp.result())
    return r
