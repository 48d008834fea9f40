"""Prometheus metrics of the request path (exposed through the official prometheus-client library).

`observe_call` is the one update per finished request (api/call.py, the call's settlement): a few
in-memory counter/histogram increments, no I/O, no lock. A request's duration is split in two
histograms: time spent waiting on upstreams and the time the gateway added. `start_call` (one line
where a call begins) puts a fresh `UpstreamClock` in a context variable; the upstream
client (providers/upstream.py) reports each attempt's span to it, from sending the request
to the upstream's last body byte (or its failure); `observe_call` reads it. Every task
the call starts shares the same clock object, and a new call replaces it, so nothing
leaks from one request to the next on a kept-alive connection. The state the operator also wants
(holds open, group-commit backlog, deposit watcher lag, price fetch status) is read at
scrape time by probes.py, not on the hot path. Imports nothing of the project, so the
API layer can call it without depending on the console.

Invariant: the request-path metrics (`LoopCounter`, `LoopHistogram`) are updated on the event
loop's thread only, and scraped there too (the console's listener runs on the same loop), so an
update needs no lock; anything updated from another thread uses prometheus_client's own (locked)
types. Hazard: a scrape copies each dict before reading it, since a process that runs more than one
loop (the test suite does) could otherwise see one change size mid-iteration.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry(auto_describe=True)

Labels = tuple[str, ...]


class LoopCounter:
    """A labelled counter that only the event loop's thread updates: one dict update an increment.

    prometheus_client's own Counter takes a lock on every `inc` (it may be updated from any thread);
    with its histograms, the seven updates of each request cost ~9.7 µs, and 2.4 µs with these (a
    microbenchmark on this project's VM). Exposed as prometheus_client's Counter is: `<name>_total`
    (without the `_created` sample).
    """

    __slots__ = ("documentation", "labelnames", "name", "values")

    def __init__(self, name: str, documentation: str, labelnames: Labels) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        return family


class LoopHistogram:
    """A labelled histogram updated on the loop's thread only (see LoopCounter): per label set, one
    count per bucket (not cumulative: the scrape sums them) and the sum of the observed values."""

    __slots__ = ("_bounds", "documentation", "labelnames", "name", "series")

    def __init__(self, name: str, documentation: str, labelnames: Labels, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._bounds = tuple(float(b) for b in buckets)  # ascending; +Inf is the last count
        self.series: dict[Labels, list[float]] = {}  # labels -> [count per bucket..., count above all, sum]

    def observe(self, labels: Labels, value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0] * (len(self._bounds) + 1) + [0.0]
        series[bisect_left(self._bounds, value)] += 1  # the first bucket whose bound is >= value ("le")
        series[-1] += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, series in list(self.series.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self._bounds, math.inf), series[:-1], strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric(labels, buckets, series[-1])
        return family


class _LoopMetrics:
    """The registry's view of the loop's metrics, read at scrape time."""

    def __init__(self, *metrics: LoopCounter | LoopHistogram) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield metric.family()


_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
REQUESTS = LoopCounter("aigateway_requests", "Finished billed requests", ("model", "endpoint", "provider", "status"))
LATENCY = LoopHistogram("aigateway_request_duration_seconds", "Time from the request's start to its settlement",
                        ("endpoint",), _DURATION_BUCKETS)
TOKENS = LoopCounter("aigateway_tokens", "Tokens billed", ("model", "direction"))
CHARGED = LoopCounter("aigateway_charged_units", "Charged amount in micro-TMT units", ("model",))
UPSTREAM = LoopHistogram("aigateway_upstream_duration_seconds",
                         "Time a request spent waiting on upstreams (every attempt, request sent to last byte)",
                         ("endpoint",), _DURATION_BUCKETS)
GATEWAY_ADDED = LoopHistogram("aigateway_gateway_added_seconds",
                              "Time the gateway added to a request (its duration minus the upstream time)",
                              ("endpoint",), (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                              2.5, 10))
REGISTRY.register(_LoopMetrics(REQUESTS, LATENCY, TOKENS, CHARGED, UPSTREAM, GATEWAY_ADDED))


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


def observe_call(model: str, endpoint: str, provider: str | None, status: int, seconds: float,
                 input_tokens: int, output_tokens: int, cost: int) -> None:
    """The one update per finished request (on the event loop)."""
    REQUESTS.inc((model, endpoint, provider or "", str(status)))
    by_endpoint = (endpoint,)
    LATENCY.observe(by_endpoint, seconds)
    clock = _CLOCK.get()
    upstream = min(seconds, clock.seconds()) if clock is not None else 0.0
    if clock is not None and clock.attempts:
        UPSTREAM.observe(by_endpoint, upstream)
    GATEWAY_ADDED.observe(by_endpoint, max(0.0, seconds - upstream))
    if input_tokens:
        TOKENS.inc((model, "input"), input_tokens)
    if output_tokens:
        TOKENS.inc((model, "output"), output_tokens)
    if cost:
        CHARGED.inc((model,), cost)


COMMIT_BATCH = Histogram("aigateway_usage_commit_batch_size", "Usage events per group commit", registry=REGISTRY,
                         buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000))
COMMIT_SECONDS = Histogram("aigateway_usage_commit_seconds", "Duration of one group commit (its transaction)",
                           registry=REGISTRY, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


def observe_commit(events: int, seconds: float) -> None:
    COMMIT_BATCH.observe(events)
    COMMIT_SECONDS.observe(seconds)
