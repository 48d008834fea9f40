"""Chunks per second through the stream filter (`SSEFilter.feed`), one CPU core.

    .venv/bin/python bench/sse_filter_speed.py                 # the current src/aigateway/api/sse.py
    git show REV:src/aigateway/api/sse.py > /tmp/old_sse.py
    .venv/bin/python bench/sse_filter_speed.py /tmp/old_sse.py  # another version, to compare

Chunks look like OpenAI's with `stream_options.include_usage` (`"usage":null` in each),
fed one event per read (a slow model) and 16 events per read (a fast one), then a usage
chunk and `[DONE]`. The best of 5 runs is reported.
"""

from __future__ import annotations

import importlib.util
import sys
import time

import orjson


def load(path: str | None):
    if path is None:
        from aigateway.api import sse
        return sse
    spec = importlib.util.spec_from_file_location("sse_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chunk(i: int, usage=None) -> bytes:
    body = {"id": "chatcmpl-abc123", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_0123456789",
            "choices": [{"index": 0, "delta": {"content": f" word{i}"}, "logprobs": None, "finish_reason": None}]
            if usage is None else [], "usage": usage}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def run(module, per_read: int, n: int = 20_000) -> float:
    events = [chunk(i) for i in range(n)]
    reads = [b"".join(events[i:i + per_read]) for i in range(0, n, per_read)]
    reads.append(chunk(0, {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10}) + b"data: [DONE]\n\n")
    best = float("inf")
    for _ in range(5):
        sse = module.SSEFilter(strip_usage=True)
        started = time.perf_counter()
        for data in reads:
            sse.feed(data)
        best = min(best, time.perf_counter() - started)
        assert sse.done and sse.usage["completion_tokens"] == n
    return n / best


if __name__ == "__main__":
    module = load(sys.argv[1] if len(sys.argv) > 1 else None)
    for per_read in (1, 16):
        print(f"{per_read:>2} event(s) per read: {run(module, per_read):>12,.0f} chunks/s")
