"""Prometheus metrics of the request path (the official prometheus-client library).

`observe_call` is the one update per finished request (api/call.py, the call's settlement): a few
in-memory counter/histogram increments, no I/O. Its duration is split in two histograms:
time spent waiting on upstreams and the time the gateway added. `start_call` (one line
where a call begins) puts a fresh `UpstreamClock` in a context variable; the upstream
client (providers/upstream.py) reports each attempt's span to it, from sending the request
to the upstream's last body byte (or its failure); `observe_call` reads it. Every task
the call starts shares the same clock object, and a new call replaces it, so nothing
leaks from one request to the next on a kept-alive connection. The state the operator also wants
(holds open, group-commit backlog, deposit watcher lag, price fetch status) is read at
scrape time by probes.py, not on the hot path. Imports nothing of the project, so the
API layer can call it without depending on the console.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("aigateway_requests", "Finished billed requests", ["model", "endpoint", "provider", "status"],
                   registry=REGISTRY)
LATENCY = Histogram("aigateway_request_duration_seconds", "Time from the request's start to its settlement",
                    ["endpoint"], registry=REGISTRY,
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
TOKENS = Counter("aigateway_tokens", "Tokens billed", ["model", "direction"], registry=REGISTRY)
CHARGED = Counter("aigateway_charged_units", "Charged amount in micro-TMT units", ["model"], registry=REGISTRY)


UPSTREAM = Histogram("aigateway_upstream_duration_seconds",
                     "Time a request spent waiting on upstreams (every attempt, request sent to last byte)",
                     ["endpoint"], registry=REGISTRY,
                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
GATEWAY_ADDED = Histogram("aigateway_gateway_added_seconds",
                          "Time the gateway added to a request (its duration minus the upstream time)",
                          ["endpoint"], registry=REGISTRY,
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))


class UpstreamClock:
    """The upstream attempts of one call: finished spans summed, open ones counted up to now."""

    __slots__ = ("_done", "_open", "_next", "attempts")

    def __init__(self) -> None:
        self._done = 0.0
        self._open: dict[int, float] = {}
        self._next = 0
        self.attempts = 0

    def begin(self) -> int:
        self._next += 1
        self._open[self._next] = time.monotonic()
        self.attempts += 1
        return self._next

    def end(self, token: int) -> None:
        started = self._open.pop(token, None)  # once: a second end (eof after release) is ignored
        if started is not None:
            self._done += time.monotonic() - started

    def seconds(self) -> float:
        now = time.monotonic()
        return self._done + sum(now - started for started in self._open.values())


_CLOCK: ContextVar[UpstreamClock | None] = ContextVar("aigateway_upstream_clock", default=None)


def start_call() -> UpstreamClock:
    """A call begins: its upstream time starts at zero (for this task and every task it starts)."""
    clock = UpstreamClock()
    _CLOCK.set(clock)
    return clock


def upstream_clock() -> UpstreamClock | None:
    """The current call's clock (None outside a call, e.g. the console's test button)."""
    return _CLOCK.get()


# The labelled children, looked up once: `metric.labels(...)` validates its arguments and takes
# a lock on every call, and seven calls per request were ~1.5% of the gateway's CPU under load
# (a py-spy profile of bench/). As many entries as the metrics' own label sets, never removed.
_CHILDREN: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (metric, *labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child


def observe_call(model: str, endpoint: str, provider: str | None, status: int, seconds: float,
                 input_tokens: int, output_tokens: int, cost: int) -> None:
    _child(REQUESTS, model, endpoint, provider or "", str(status)).inc()
    _child(LATENCY, endpoint).observe(seconds)
    clock = _CLOCK.get()
    upstream = min(seconds, clock.seconds()) if clock is not None else 0.0
    if clock is not None and clock.attempts:
        _child(UPSTREAM, endpoint).observe(upstream)
    _child(GATEWAY_ADDED, endpoint).observe(max(0.0, seconds - upstream))
    if input_tokens:
        _child(TOKENS, model, "input").inc(input_tokens)
    if output_tokens:
        _child(TOKENS, model, "output").inc(output_tokens)
    if cost:
        _child(CHARGED, model).inc(cost)


COMMIT_BATCH = Histogram("aigateway_usage_commit_batch_size", "Usage events per group commit", registry=REGISTRY,
                         buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000))
COMMIT_SECONDS = Histogram("aigateway_usage_commit_seconds", "Duration of one group commit (its transaction)",
                           registry=REGISTRY, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


def observe_commit(events: int, seconds: float) -> None:
    COMMIT_BATCH.observe(events)
    COMMIT_SECONDS.observe(seconds)
