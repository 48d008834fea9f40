"""Sample a target with py-spy while wrk loads it; summarize where time goes."""
from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys

from procs import LOAD_CPU

SECONDS = 10


def _py_spy() -> str | None:
    near = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return near if os.path.exists(near) else shutil.which("py-spy")


_LINE = re.compile(r":\d+\)$")


def _function(frame: str) -> str:
    """'name (path/file.py:123)' -> 'name (path/file.py)': one entry per function."""
    return _LINE.sub(")", frame)


def _package(frame: str) -> str:
    m = re.search(r"\(([^():]+)", frame)
    path = m.group(1) if m else frame
    return "python" if path.startswith("<") else path.split("/")[0].removesuffix(".py")


def summarize(raw_file: str, own: str, top: int = 20) -> dict:
    """Share of busy samples: self time per function, self time per package, and
    inclusive time of the functions whose path contains `own`."""
    self_t, pkg, incl, total = collections.Counter(), collections.Counter(), collections.Counter(), 0
    with open(raw_file) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not n.isdigit():
                continue
            frames = [_function(fr) for fr in stack.split(";") if fr]
            total += int(n)
            if frames:
                self_t[frames[-1]] += int(n)
                pkg[_package(frames[-1])] += int(n)
            for fr in set(frames):
                if own in fr and not fr.startswith(("<module>", "serve (")):
                    incl[fr] += int(n)
    pct = lambda c, k=top: [(round(100 * v / total, 1), x) for x, v in c.most_common(k)]  # noqa: E731
    return {"samples": total, "self": pct(self_t), "self_by_package": pct(pkg, 10),
            "inclusive_own": pct(incl)}


def profile(t, load, out: str, profile_name: str) -> dict:
    spy = _py_spy()
    if not spy:
        return {"error": "py-spy not installed (pip install py-spy into .venv)"}
    raw = os.path.join(out, f"pyspy-{t.name}-{profile_name}.raw")
    spy_proc = subprocess.Popen(
        ["taskset", "-c", str(LOAD_CPU), spy, "record", "-p", str(t.proc.pid), "-d", str(SECONDS),
         "-r", "250", "-f", "raw", "-o", raw, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    load_result = load()
    _, err = spy_proc.communicate(timeout=60)
    if not os.path.exists(raw):
        return {"error": f"py-spy failed: {err.strip()[-300:]}"}
    own = "aigateway" if t.name == "ours" else "litellm"
    res = summarize(raw, own)
    res["load"] = {k: load_result.get(k) for k in ("conns", "rps", "p50_us", "p99_us", "target_cpu")}
    with open(os.path.join(out, f"pyspy-{t.name}-{profile_name}.txt"), "w") as f:
        f.write(format_summary(res))
    return res


def format_summary(res: dict) -> str:
    lines = [f"busy samples: {res['samples']}  load: {res.get('load')}", "", "self time by package:"]
    lines += [f"  {p:5.1f}%  {fr}" for p, fr in res["self_by_package"]]
    lines += ["", "self time by function:"]
    lines += [f"  {p:5.1f}%  {fr}" for p, fr in res["self"]]
    lines += ["", "inclusive (own code):"]
    lines += [f"  {p:5.1f}%  {fr}" for p, fr in res["inclusive_own"]]
    return "\n".join(lines) + "\n"
