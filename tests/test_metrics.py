"""The loop's own counters and histograms expose exactly what prometheus_client's would."""

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from aigateway.metrics import LoopCounter, LoopHistogram, _LoopMetrics

BUCKETS = (0.0005, 0.001, 0.01, 0.5, 2.5)
# on a bound (counted in that bucket: "le"), between bounds, above every bound, zero
VALUES = [0.0005, 0.0007, 0.001, 0.3, 0.5, 2.5, 2.6, 999.0, 0.0, 0.01]


def _text(registry: CollectorRegistry) -> list[str]:
    return sorted(line for line in generate_latest(registry).decode().splitlines() if "_created" not in line)


def test_histogram_and_counter_match_prometheus_client_sample_for_sample():
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    h = Histogram("t_seconds", "doc", ["endpoint"], registry=theirs, buckets=BUCKETS)
    c = Counter("t_things", "doc", ["model", "kind"], registry=theirs)
    lh = LoopHistogram("t_seconds", "doc", ("endpoint",), BUCKETS)
    lc = LoopCounter("t_things", "doc", ("model", "kind"))
    ours.register(_LoopMetrics(lh, lc))
    for i, v in enumerate(VALUES):
        endpoint = "chat" if i % 3 else "embeddings"
        h.labels(endpoint).observe(v)
        lh.observe((endpoint,), v)
        c.labels("m", "input").inc(i)
        lc.inc(("m", "input"), i)
        c.labels("m\"x", "output").inc()
        lc.inc(("m\"x", "output"))
    assert _text(ours) == _text(theirs)
    # embeddings got 0.0005, 0.3, 2.6, 0.01: a value on a bound counts in that bucket
    assert 't_seconds_bucket{endpoint="embeddings",le="0.0005"} 1.0' in _text(ours)
    assert 't_seconds_bucket{endpoint="embeddings",le="2.5"} 3.0' in _text(ours)
    assert 't_seconds_bucket{endpoint="embeddings",le="+Inf"} 4.0' in _text(ours)
