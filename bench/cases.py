"""The benchmark's tests: what each one sends and what it keeps (bench/README.md, "Tests").

A mixin of `run.Bench`, which supplies the harness: `self.s` (Settings), `self.a` (the
command line), `self.bodies`, `self.tally`, `self.loadgen`, `self.wrk` and `self.harness_pids`.
"""
from __future__ import annotations

import mock
import wrk
from procs import wait_idle
from targets import model_name

# What a sweep or concurrency test keeps of each wrk step.
STEP_FIELDS = ("conns", "rps", "error_rate", "p50_us", "p99_us", "target_cpu", "db_cpu", "harness_cpu",
               "harness_saturated", "foreign_cpu", "noisy", "peak_pss_kib", "peak_proc_pss_kib")


class Cases:
    def t_latency(self, t, route: str, conns: int) -> dict:
        r = self.wrk(t, route, conns, self.s.lat_s)
        self.tally.add(t.name, model_name(route), r["ok"], r["unfinished_max"])
        return r

    def t_embed(self, t, conns: int) -> dict:
        wait_idle(t.pids + t.db_pids)
        r = wrk.run(t.embed_url(), self.bodies["embed"], t.token, conns, self.s.lat_s,
                    t.pids, self.harness_pids, t.db_pids)
        self.tally.add(t.name, "bench-embed", r["ok"], r["unfinished_max"])
        return r

    def t_concurrency(self, t) -> dict:
        steps = []
        for c in self.s.concurrency:
            r = self.wrk(t, "zero", c, self.s.sweep_s)
            self.tally.add(t.name, model_name("zero"), r["ok"], r["unfinished_max"])
            steps.append({k: r[k] for k in STEP_FIELDS})
        return {"steps": steps, "peak_pss_kib": max((st["peak_pss_kib"] for st in steps), default=0),
                "peak_proc_pss_kib": max((st["peak_proc_pss_kib"] for st in steps), default=0)}

    def t_sweep(self, t, route: str) -> dict:
        steps, best = [], None
        for c in self.s.sweep:
            r = self.wrk(t, route, c, self.s.sweep_s)
            self.tally.add(t.name, model_name(route), r["ok"], r["unfinished_max"])
            steps.append({k: r[k] for k in STEP_FIELDS})
            if r["error_rate"] >= 0.01:
                break
            improved = best is None or r["rps"] >= best["rps"] * 1.03
            if best is None or r["rps"] > best["rps"]:
                best = r
            if not improved:
                break   # saturated: more connections only add queueing
        return {"steps": steps,
                "max_rps": best["rps"] if best else 0.0,
                "at_conns": best["conns"] if best else None,
                # CPU of the target and of its database, per request
                "cpu_ms_per_req": (1000 * (best["target_cpu"] + best["db_cpu"]) / best["rps"])
                if best and best["rps"] else None,
                "db_cpu_ms_per_req": (1000 * best["db_cpu"] / best["rps"]) if best and best["rps"] else None,
                "harness_saturated": bool(best and best["harness_saturated"]),
                "noisy": any(st["noisy"] for st in steps),
                "peak_pss_kib": max(s["peak_pss_kib"] for s in steps),
                "peak_proc_pss_kib": max(s["peak_proc_pss_kib"] for s in steps)}

    def t_stream(self, t, route: str, rate: float, seconds: float | None = None) -> dict:
        r = self.loadgen("stream", t, t.chat_url(route), self.bodies[route], seconds or self.s.stream_s,
                         rate=rate, chunks=mock.STREAM_CHUNKS[route], timeout=90)
        self.tally.add(t.name, model_name(route), r["ok"], r["errors"])
        return r

    def t_rate(self, t) -> dict:
        r = self.loadgen("rate", t, t.chat_url("zero"), self.bodies["zero"], self.s.rate_s,
                         rate=self.s.fixed_rate)
        self.tally.add(t.name, "bench-zero", r["ok"], r["errors"])
        return r

    def tests(self):
        s, c = self.s, self.s.conns_fixed
        every = [
            ("lat_c1_zero", lambda t: self.t_latency(t, "zero", 1)),
            ("lat_c1_embed", lambda t: self.t_embed(t, 1)),
            ("lat_c1_stream0", lambda t: self.t_latency(t, "stream0", 1)),
            ("rps_c32_zero", lambda t: self.t_latency(t, "zero", c)),
            ("rps_c32_stream0", lambda t: self.t_latency(t, "stream0", c)),
            ("rps_c32_embed", lambda t: self.t_embed(t, c)),
            ("lat_c16_slow50", lambda t: self.t_latency(t, "slow50", 16)),
            ("lat_c64_slow50", lambda t: self.t_latency(t, "slow50", 64)),
            ("rate_zero", self.t_rate),
            ("stream20", lambda t: self.t_stream(t, "stream20", s.stream20_rate)),
            ("stream200", lambda t: self.t_stream(t, "stream200", s.stream200_rate)),
            ("streams_1k", lambda t: self.t_stream(t, "stream1k", s.streams1k_rate, s.streams1k_s)),
            ("sweep_zero", lambda t: self.t_sweep(t, "zero")),
            ("sweep_slow50", lambda t: self.t_sweep(t, "slow50")),
            ("conc_zero", self.t_concurrency),
        ]
        if not self.a.tests:
            return every
        known = {name for name, _ in every}
        unknown = set(self.a.tests) - known
        if unknown:
            raise SystemExit(f"unknown tests {sorted(unknown)}; known: {sorted(known)}")
        return [(name, fn) for name, fn in every if name in self.a.tests]
