"""Turn raw per-round results into medians, added latency, ratios, a table and a JSON line."""
from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess

from procs import NOISY

HERE = os.path.dirname(os.path.abspath(__file__))


def _cmd(*cmd: str) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def meta(a, s) -> dict:
    cpu = re.search(r"model name\s*:\s*(.+)", open("/proc/cpuinfo").read())
    mem = re.search(r"MemTotal:\s*(\d+)", open("/proc/meminfo").read())
    lt_py = os.path.join(HERE, ".venv-litellm", "bin", "python")
    ver = "import importlib.metadata as m; print(m.version('{}'))"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu.group(1) if cpu else "?", "cores": os.cpu_count(),
        "mem_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "kernel": platform.release(), "python": platform.python_version(),
        "nginx": _cmd("nginx", "-v").replace("nginx version: ", ""),
        "wrk": _cmd("wrk", "-v").splitlines()[0] if _cmd("wrk", "-v") else "?",
        "litellm": _cmd(lt_py, "-c", ver.format("litellm")) if os.path.exists(lt_py) else None,
        "aigateway": _cmd(os.path.join(os.path.dirname(HERE), ".venv", "bin", "python"), "-c",
                          ver.format("aigateway")),
        "aigateway_git": _cmd("git", "-C", os.path.dirname(HERE), "rev-parse", "--short", "HEAD")[:12],
        "postgres": _cmd("psql", "--version"),
        "args": {k: v for k, v in vars(a).items()}, "settings": vars(s),
    }


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _rounds(tr: dict, test: str) -> list[dict]:
    return [r for r in tr.get("results", {}).get(test, []) if "error" not in r]


def _ms(us):
    return None if us is None else us / 1000


def _target_metrics(tr: dict) -> dict:
    m: dict = {}
    for test in ("lat_c1_zero", "lat_c16_slow50", "lat_c64_slow50", "lat_c1_embed", "lat_c1_stream0"):
        rs = _rounds(tr, test)
        key = test[4:]
        m[f"{key}_p50_ms"] = _med([_ms(r["p50_us"]) for r in rs])
        m[f"{key}_p99_ms"] = _med([_ms(r["p99_us"]) for r in rs])
        m[f"{key}_errors"] = sum(r["requests"] - r["ok"] + r["err_read"] + r["err_connect"]
                                 + r["err_timeout"] for r in rs)
        m[f"{key}_cpu_ms_per_req"] = _med([1000 * (r["target_cpu"] + r["db_cpu"]) / r["rps"]
                                           for r in rs if r.get("rps") and "target_cpu" in r])
    for test in ("rps_c32_zero", "rps_c32_stream0", "rps_c32_embed"):
        rs = _rounds(tr, test)
        m[test] = _med([r["rps"] for r in rs])
        m[f"{test}_p50_ms"] = _med([_ms(r["p50_us"]) for r in rs])
        m[f"{test}_p99_ms"] = _med([_ms(r["p99_us"]) for r in rs])
        m[f"{test}_errors"] = sum(r["requests"] - r["ok"] + r["err_read"] + r["err_connect"]
                                  + r["err_timeout"] for r in rs)
        m[f"{test}_cpu_ms_per_req"] = _med([1000 * (r["target_cpu"] + r["db_cpu"]) / r["rps"]
                                            for r in rs if r.get("rps")])
    rs = _rounds(tr, "rate_zero")
    m["rate_zero_p50_ms"] = _med([r["p50_ms"] for r in rs])
    m["rate_zero_p99_ms"] = _med([r["p99_ms"] for r in rs])
    m["rate_zero_errors"] = sum(r["errors"] for r in rs)
    for test in ("stream20", "stream200", "streams_1k"):
        rs = _rounds(tr, test)
        for k in ("ttft_p50_ms", "ttft_p99_ms", "gap_p50_ms", "gap_p99_ms"):
            m[f"{test}_{k}"] = _med([r[k] for r in rs])
        m[f"{test}_lost_chunks"] = sum(r["lost_chunks"] for r in rs) if rs else None
        m[f"{test}_errors"] = sum(r["errors"] for r in rs) if rs else None
        m[f"{test}_streams"] = sum(r["sent"] for r in rs)
    for test in ("sweep_zero", "sweep_slow50"):
        rs = _rounds(tr, test)
        key = test[6:]
        m[f"max_rps_{key}"] = _med([r["max_rps"] for r in rs])
        m[f"max_rps_{key}_conns"] = _med([r["at_conns"] for r in rs])
        m[f"cpu_ms_per_req_{key}"] = _med([r["cpu_ms_per_req"] for r in rs])
        m[f"db_cpu_ms_per_req_{key}"] = _med([r.get("db_cpu_ms_per_req") for r in rs])
    rs = _rounds(tr, "conc_zero")
    by_conns: dict[int, list[dict]] = {}
    for r in rs:
        for step in r.get("steps", []):
            by_conns.setdefault(step["conns"], []).append(step)
    for c, steps in by_conns.items():
        m[f"conc_{c}_rps"] = _med([s["rps"] for s in steps])
        m[f"conc_{c}_p99_over_p50"] = _med([s["p99_us"] / s["p50_us"] for s in steps if s.get("p50_us")])
    for c in (128, 512):  # what is kept of the req/s at 32 connections (issue 18: >= 90%)
        m[f"conc_{c}_kept_pct"] = (100 * m[f"conc_{c}_rps"] / m["conc_32_rps"]
                                   if m.get(f"conc_{c}_rps") and m.get("conc_32_rps") else None)
    m["idle_pss_mib"] = tr.get("idle_pss_kib", 0) / 1024 or None
    peaks = [r.get("peak_pss_kib", 0) for rs in tr.get("results", {}).values() for r in rs]
    m["load_pss_mib"] = (max(peaks) / 1024) if peaks and max(peaks) else None
    # With several workers a target is several processes, and issue 18's memory bound is per worker.
    procs = [r.get("peak_proc_pss_kib", 0) for rs in tr.get("results", {}).values() for r in rs]
    m["load_proc_pss_mib"] = (max(procs) / 1024) if procs and max(procs) else None
    m["idle_proc_pss_mib"] = tr.get("idle_proc_pss_kib", 0) / 1024 or None
    flagged = [test for test, rs in tr.get("results", {}).items()
               for r in rs if r.get("harness_saturated")]
    m["saturated_tests"] = sorted(set(flagged))
    m["noisy_tests"] = sorted({test for test, rs in tr.get("results", {}).items()
                               for r in rs if r.get("noisy")})
    m["test_errors"] = [f"{test}: {r['error']}" for test, rs in tr.get("results", {}).items()
                        for r in rs if "error" in r]
    return m


ADDED = {  # added-latency key -> (test, field in the raw result, scale to ms)
    "c1_zero_p50": ("lat_c1_zero", "p50_us", 1e-3), "c1_zero_p99": ("lat_c1_zero", "p99_us", 1e-3),
    "c16_slow50_p50": ("lat_c16_slow50", "p50_us", 1e-3), "c16_slow50_p99": ("lat_c16_slow50", "p99_us", 1e-3),
    "c64_slow50_p50": ("lat_c64_slow50", "p50_us", 1e-3), "c64_slow50_p99": ("lat_c64_slow50", "p99_us", 1e-3),
    "c1_embed_p50": ("lat_c1_embed", "p50_us", 1e-3), "c1_embed_p99": ("lat_c1_embed", "p99_us", 1e-3),
    "c1_stream0_p50": ("lat_c1_stream0", "p50_us", 1e-3), "c1_stream0_p99": ("lat_c1_stream0", "p99_us", 1e-3),
    "rate_zero_p50": ("rate_zero", "p50_ms", 1), "rate_zero_p99": ("rate_zero", "p99_ms", 1),
    "stream20_ttft_p50": ("stream20", "ttft_p50_ms", 1), "stream20_ttft_p99": ("stream20", "ttft_p99_ms", 1),
    "stream200_ttft_p50": ("stream200", "ttft_p50_ms", 1), "stream200_ttft_p99": ("stream200", "ttft_p99_ms", 1),
    "stream200_gap_p99": ("stream200", "gap_p99_ms", 1),
    "streams_1k_ttft_p50": ("streams_1k", "ttft_p50_ms", 1), "streams_1k_ttft_p99": ("streams_1k", "ttft_p99_ms", 1),
    "streams_1k_gap_p99": ("streams_1k", "gap_p99_ms", 1),
}


def _added(tr: dict, direct: dict) -> dict:
    """Per round: target minus direct from the same round; then the median."""
    out = {}
    for key, (test, fld, scale) in ADDED.items():
        a = tr.get("results", {}).get(test, [])
        b = direct.get("results", {}).get(test, [])
        diffs = [(x[fld] - y[fld]) * scale for x, y in zip(a, b)
                 if "error" not in x and "error" not in y and x.get(fld) is not None
                 and y.get(fld) is not None]
        out[f"added_{key}_ms"] = _med(diffs)
    return out


RATIO_KEYS = [f"added_{k}_ms" for k in ADDED] + [
    "max_rps_zero", "max_rps_slow50", "cpu_ms_per_req_zero", "cpu_ms_per_req_slow50",
    "idle_pss_mib", "load_pss_mib"]


def summarize(result: dict) -> dict:
    out = {"meta": {k: v for k, v in result["meta"].items() if k not in ("args",)}, "profiles": {}}
    for profile, ph in result["phases"].items():
        direct = ph["targets"].get("direct", {})
        ts = {}
        for name, tr in ph["targets"].items():
            if "na" in tr:
                ts[name] = {"na": tr["na"]}
                continue
            m = _target_metrics(tr)
            if name != "direct":
                m.update(_added(tr, direct))
            ts[name] = m
        ratios = {}
        o, lt = ts.get("ours", {}), ts.get("litellm", {})
        for k in RATIO_KEYS:
            a, b = lt.get(k), o.get(k)
            if k.startswith("added_") and isinstance(b, (int, float)) and b < 0.1:
                ratios[k] = None   # ours adds ~nothing: a ratio would only amplify noise
                continue
            ratios[k] = float(f"{a / b:.3g}") if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 else None
        g = ph.get("gate")
        gates = {n: {k: x[k] for k in ("passed", "problems", "charges", "charged_units", "billed_rows")}
                 for n, x in ph.get("gates", {}).items()}
        out["profiles"][profile] = {
            "gates": gates,
            "targets": ts, "ratios_litellm_over_ours": ratios, "notes": ph.get("notes", []),
            "bare_writes": ph.get("bare_writes"),
            "gate": None if g is None else {k: g[k] for k in ("passed", "problems", "charges",
                                                               "charged_units", "billed_rows")},
        }
    return out


# ----- table ---------------------------------------------------------------
def _f(x, nd=2, plus=False):
    if x is None:
        return "-"
    if isinstance(x, float):
        s = f"{x:+.{nd}f}" if plus else f"{x:.{nd}f}"
    else:
        s = f"{x:+d}" if plus else str(x)
    return s


def _pair(m, a, b, plus=False, nd=2):
    if not m or "na" in m:
        return "N/A"
    return f"{_f(m.get(a), nd, plus)} / {_f(m.get(b), nd, plus)}"


def _x(v) -> str:
    return "-" if v is None else (f"{v:.1f}x" if v >= 1 else f"{v:.2g}x")


def _ratio(r, a, b=None):
    return _x(r.get(a)) if b is None else f"{_x(r.get(a))} / {_x(r.get(b))}"


ROWS = [
    # label, (key_a, key_b), added?, ratio keys
    ("latency c=1, 0 ms route, p50 / p99 ms", ("c1_zero_p50_ms", "c1_zero_p99_ms"), False, None),
    ("  added vs direct", ("added_c1_zero_p50_ms", "added_c1_zero_p99_ms"), True, "same"),
    ("latency c=16, 50 ms route", ("c16_slow50_p50_ms", "c16_slow50_p99_ms"), False, None),
    ("  added vs direct", ("added_c16_slow50_p50_ms", "added_c16_slow50_p99_ms"), True, "same"),
    ("latency c=64, 50 ms route", ("c64_slow50_p50_ms", "c64_slow50_p99_ms"), False, None),
    ("  added vs direct", ("added_c64_slow50_p50_ms", "added_c64_slow50_p99_ms"), True, "same"),
    ("open loop {rate} req/s, 0 ms route", ("rate_zero_p50_ms", "rate_zero_p99_ms"), False, None),
    ("  added vs direct", ("added_rate_zero_p50_ms", "added_rate_zero_p99_ms"), True, "same"),
    ("stream 20 chunks: TTFT p50 / p99 ms", ("stream20_ttft_p50_ms", "stream20_ttft_p99_ms"), False, None),
    ("  added TTFT", ("added_stream20_ttft_p50_ms", "added_stream20_ttft_p99_ms"), True, "same"),
    ("  chunk gap p99 ms / lost chunks", ("stream20_gap_p99_ms", "stream20_lost_chunks"), False, None),
    ("stream 200 chunks: TTFT p50 / p99 ms", ("stream200_ttft_p50_ms", "stream200_ttft_p99_ms"), False, None),
    ("  added TTFT", ("added_stream200_ttft_p50_ms", "added_stream200_ttft_p99_ms"), True, "same"),
    ("  chunk gap p99 ms / lost chunks", ("stream200_gap_p99_ms", "stream200_lost_chunks"), False, None),
    ("  added chunk gap p99 (target <= 2 ms) / failed streams", ("added_stream200_gap_p99_ms", "stream200_errors"),
     True, None),
    ("1,000 streams at once, 200 chunks at 10/s: TTFT p50 / p99 ms",
     ("streams_1k_ttft_p50_ms", "streams_1k_ttft_p99_ms"), False, None),
    ("  added TTFT", ("added_streams_1k_ttft_p50_ms", "added_streams_1k_ttft_p99_ms"), True, None),
    ("  chunk gap p99 ms / lost chunks", ("streams_1k_gap_p99_ms", "streams_1k_lost_chunks"), False, None),
    ("  added chunk gap p99 (target <= 2 ms) / failed streams", ("added_streams_1k_gap_p99_ms", "streams_1k_errors"),
     True, None),
    ("latency c=1, embeddings, p50 / p99 ms", ("c1_embed_p50_ms", "c1_embed_p99_ms"), False, None),
    ("  added vs direct", ("added_c1_embed_p50_ms", "added_c1_embed_p99_ms"), True, None),
    ("latency c=1, whole 20-chunk stream (0 ms gaps), p50 / p99 ms", ("c1_stream0_p50_ms", "c1_stream0_p99_ms"),
     False, None),
    ("  added vs direct", ("added_c1_stream0_p50_ms", "added_c1_stream0_p99_ms"), True, None),
    ("req/s at {conns} conns: chat 0 ms / embeddings", ("rps_c32_zero", "rps_c32_embed"), False, None),
    ("req/s at {conns} conns: 20-chunk stream 0 ms / errors", ("rps_c32_stream0", "rps_c32_stream0_errors"),
     False, None),
    ("max req/s (<1% errors), 0 ms route / at conns", ("max_rps_zero", "max_rps_zero_conns"), False, ("max_rps_zero",)),
    ("max req/s (<1% errors), 50 ms route / at conns", ("max_rps_slow50", "max_rps_slow50_conns"), False, ("max_rps_slow50",)),
    ("req/s at 32 / 128 conns, 0 ms route", ("conc_32_rps", "conc_128_rps"), False, None),
    ("  req/s at 512 conns / p99 ÷ p50 at 32", ("conc_512_rps", "conc_32_p99_over_p50"), False, None),
    ("  % of the 32-conn req/s kept at 128 / 512", ("conc_128_kept_pct", "conc_512_kept_pct"), False, None),
    ("  p99 ÷ p50 at 128 / 512 conns", ("conc_128_p99_over_p50", "conc_512_p99_over_p50"), False, None),
    ("CPU ms per request (incl. its DB) at max req/s, 0 / 50 ms", ("cpu_ms_per_req_zero", "cpu_ms_per_req_slow50"), False, "same"),
    ("memory PSS MiB, idle / under load", ("idle_pss_mib", "load_pss_mib"), False, "same"),
    ("  largest single process (one worker), idle / under load", ("idle_proc_pss_mib", "load_proc_pss_mib"),
     False, None),
]


def table(summary: dict) -> str:
    meta = summary["meta"]
    rate = meta.get("settings", {}).get("fixed_rate", "?")
    conns = meta.get("settings", {}).get("conns_fixed", 32)
    cal = meta.get("calibration_ms")
    out = [f"# aigateway benchmark, {meta.get('date')}",
           f"{meta.get('cpu')}, {meta.get('cores')} cores; targets pinned to core 0, "
           f"mock + load generators to core 1; rounds: {meta.get('settings', {}).get('rounds')} (median)",
           ""] + ([f"calibration (10^6-step Python loop on the target core, best of 5, ms): start {cal[0]}, "
                   f"end {cal[-1]}", ""] if cal else []) + [f"note: {n}" for n in meta.get("notes", [])] + [""]
    for profile, p in summary["profiles"].items():
        ts, r = p["targets"], p["ratios_litellm_over_ours"]
        names = [n for n in ("direct", "floor", *[n for n in ts if n.startswith("ours")], "litellm") if n in ts]
        out += [f"## profile: {profile}", "",
                "| metric | " + " | ".join(names) + " | litellm / ours |", "|---" * (len(names) + 2) + "|"]
        for label, (a, b), plus, rk in ROWS:
            if all(isinstance(ts.get(n), dict) and "na" not in ts[n] and ts[n].get(a) is None for n in names):
                continue   # a test this run did not include
            cells = []
            for name in names:
                m = ts.get(name)
                if plus and name == "direct":
                    cells.append("")
                elif m is None:
                    cells.append("")
                else:
                    whole = a.startswith(("max_rps", "rps_")) and not a.endswith("_per_req")
                    nd = 0 if whole else (1 if "pss" in a else 2)
                    cells.append(_pair(m, a, b, plus, nd))
            ratio = "" if rk is None else (_ratio(r, a, b) if rk == "same" else _ratio(r, rk[0]))
            out.append(f"| {label.format(rate=rate, conns=conns)} | " + " | ".join(cells) + f" | {ratio} |")
        for name in names:
            m = ts.get(name) or {}
            if "na" in m:
                out.append(f"\n{name}: N/A: {m['na']}")
            if m.get("saturated_tests"):
                why = (" (expected for direct: mock and load generator share core 1, so the"
                       " direct baseline is a floor, not a ceiling)") if name == "direct" else ""
                out.append(f"\n{name}: harness core saturated during: "
                           f"{', '.join(m['saturated_tests'])}{why}")
            if m.get("noisy_tests"):
                out.append(f"\n{name}: other processes used > {NOISY} core during: "
                           f"{', '.join(m['noisy_tests'])} (numbers may be disturbed)")
            if m.get("test_errors"):
                out.append(f"\n{name}: test errors: {'; '.join(m['test_errors'][:5])}")
        if p.get("bare_writes") is not None:
            ok = "OK" if p["bare_writes"] == 0 else "FAIL: billing should be off"
            out.append(f"\nbilling-off check (ours targets with billing off): {p['bare_writes']} usage/charge rows: {ok}")
        for gname, g in (p.get("gates") or ({"ours": p["gate"]} if p.get("gate") else {})).items():
            verdict = "PASS" if g["passed"] else f"FAIL (results of {gname} in this profile do not count)"
            out.append(f"\nledger gate ({gname}): {verdict}: {g['billed_rows']} billed usage rows, "
                       f"{g['charges']} charges, {g['charged_units']} units charged"
                       + ("" if g["passed"] else "; " + "; ".join(g["problems"])))
        out += _variants(ts, conns)
        for n in p.get("notes", []):
            out.append(f"\nnote: {n}")
        out.append("")
    return "\n".join(out) + "\n"


VARIANT_ROWS = [  # label, metric key, "ms" (difference) or "rps" (ratio)
    ("added p50 c=1, chat (ms)", "added_c1_zero_p50_ms", "ms"),
    ("added p50 c=1, embeddings (ms)", "added_c1_embed_p50_ms", "ms"),
    ("added p50 c=1, whole 20-chunk stream (ms)", "added_c1_stream0_p50_ms", "ms"),
    ("added TTFT p50, 20-chunk stream, open loop (ms)", "added_stream20_ttft_p50_ms", "ms"),
    ("req/s at {conns} conns, chat", "rps_c32_zero", "rps"),
    ("req/s at {conns} conns, 20-chunk stream", "rps_c32_stream0", "rps"),
    ("req/s at {conns} conns, embeddings", "rps_c32_embed", "rps"),
    ("CPU ms per request, chat, c=1 (incl. DB)", "c1_zero_cpu_ms_per_req", "ms"),
    ("CPU ms per request, embeddings, c=1", "c1_embed_cpu_ms_per_req", "ms"),
    ("CPU ms per request, 20-chunk stream, c=1", "c1_stream0_cpu_ms_per_req", "ms"),
    ("CPU ms per request, chat, {conns} conns", "rps_c32_zero_cpu_ms_per_req", "ms"),
    ("CPU ms per request, embeddings, {conns} conns", "rps_c32_embed_cpu_ms_per_req", "ms"),
    ("CPU ms per request, 20-chunk stream, {conns} conns", "rps_c32_stream0_cpu_ms_per_req", "ms"),
]


def _variants(ts: dict, conns: int) -> list[str]:
    """Each `ours-...` variant next to `ours`, from the same run (differences and ratios)."""
    base = ts.get("ours")
    others = [n for n in ts if n.startswith("ours-") and "na" not in ts[n]]
    if not base or "na" in base or not others:
        return []
    out = ["", "| same run | ours | " + " | ".join(f"{n} | {n} vs ours" for n in others) + " |",
           "|---" * (2 + 2 * len(others)) + "|"]
    for label, key, kind in VARIANT_ROWS:
        a = base.get(key)
        nd = 0 if kind == "rps" else (3 if "cpu_ms" in key else 2)
        cells = [_f(a, nd)]
        for n in others:
            b = ts[n].get(key)
            cells.append(_f(b, nd))
            if a is None or b is None:
                cells.append("-")
            elif kind == "rps":
                cells.append(f"{100 * (b / a - 1):+.1f}%" if a else "-")
            elif "cpu_ms" in key:
                cells.append(f"{b - a:+.3f} ({100 * (b / a - 1):+.0f}%)" if a else "-")
            else:
                cells.append(f"{b - a:+.2f}")
        if any(c != "-" for c in cells):
            out.append(f"| {label.format(conns=conns)} | " + " | ".join(cells) + " |")
    return out


if __name__ == "__main__":   # re-render a run's table from its raw.json (after changes to this file)
    import json
    import sys

    with open(sys.argv[1]) as f:
        print(table(summarize(json.load(f))))
