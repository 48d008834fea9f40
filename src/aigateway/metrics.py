"""Prometheus metrics of the request path (the official prometheus-client library).

`observe_call` is the one update per finished request (api/call.py, the call's settlement): a few
in-memory counter/histogram increments, no I/O. The state the operator also wants
(holds open, group-commit backlog, deposit watcher lag, price fetch status) is read at
scrape time by probes.py, not on the hot path. Imports nothing of the project, so the
API layer can call it without depending on the console.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("aigateway_requests", "Finished billed requests", ["model", "endpoint", "provider", "status"],
                   registry=REGISTRY)
LATENCY = Histogram("aigateway_request_duration_seconds", "Time from the request's start to its settlement",
                    ["endpoint"], registry=REGISTRY,
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
TOKENS = Counter("aigateway_tokens", "Tokens billed", ["model", "direction"], registry=REGISTRY)
CHARGED = Counter("aigateway_charged_units", "Charged amount in micro-TMT units", ["model"], registry=REGISTRY)


def observe_call(model: str, endpoint: str, provider: str | None, status: int, seconds: float,
                 input_tokens: int, output_tokens: int, cost: int) -> None:
    REQUESTS.labels(model, endpoint, provider or "", str(status)).inc()
    LATENCY.labels(endpoint).observe(seconds)
    if input_tokens:
        TOKENS.labels(model, "input").inc(input_tokens)
    if output_tokens:
        TOKENS.labels(model, "output").inc(output_tokens)
    if cost:
        CHARGED.labels(model).inc(cost)


COMMIT_BATCH = Histogram("aigateway_usage_commit_batch_size", "Usage events per group commit", registry=REGISTRY,
                         buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000))
COMMIT_SECONDS = Histogram("aigateway_usage_commit_seconds", "Duration of one group commit (its transaction)",
                           registry=REGISTRY, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


def observe_commit(events: int, seconds: float) -> None:
    COMMIT_BATCH.observe(events)
    COMMIT_SECONDS.observe(seconds)
