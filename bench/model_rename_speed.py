"""What renaming the `model` field costs the stream filter: chunks/s with and without it, one CPU core.

    .venv/bin/python bench/model_rename_speed.py

Same chunks as bench/sse_filter_speed.py (OpenAI's shape, `"usage":null` in each; one event per
read and 16 per read). "off" is the filter as before this feature (no rename object); "bytes" is
the shipped model rename (learned `"model":"<upstream>"` bytes, `bytes.replace`); "bytes+id" adds
the request-id rename that chat answers get (what ships); "regex" forces the
fallback path (the upstream's spelling changes every chunk); "reparse" is what parsing and
re-serialising every chunk would cost, for comparison. Best of 5 runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from sse_filter_speed import chunk  # noqa: E402

from aigateway.api.model_name import AnswerRename  # noqa: E402
from aigateway.api.sse import SSEFilter  # noqa: E402


class _Reparse:
    """Parse and re-serialise every event: the approach the byte rename avoids."""

    def apply(self, block: bytes) -> bytes:
        out = []
        for event in block.split(b"\n\n"):
            if event.startswith(b"data: {"):
                body = orjson.loads(event[6:])
                body["model"] = "llama-3.1-70b"
                event = b"data: " + orjson.dumps(body)
            out.append(event)
        return b"\n\n".join(out)


class _AlwaysRegex(AnswerRename):
    def apply(self, block: bytes) -> bytes:
        self.model_bytes = b"never"
        return super().apply(block)


def run(make_rename, per_read: int, n: int = 20_000) -> float:
    events = [chunk(i) for i in range(n)]
    reads = [b"".join(events[i:i + per_read]) for i in range(0, n, per_read)]
    reads.append(chunk(0, {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10}) + b"data: [DONE]\n\n")
    best = float("inf")
    for _ in range(5):
        sse = SSEFilter(strip_usage=True, rename=make_rename())
        started = time.perf_counter()
        out = [sse.feed(data) for data in reads]
        best = min(best, time.perf_counter() - started)
        assert sse.done and sse.usage["completion_tokens"] == n
        if make_rename() is not None:
            assert b'"model":"gpt-4o-mini"' not in b"".join(out)
    return n / best


if __name__ == "__main__":
    variants = {"off": lambda: None, "bytes": lambda: AnswerRename("llama-3.1-70b"),
                "bytes+id": lambda: AnswerRename("llama-3.1-70b", "req_0123456789abcdef00000001"),
                "regex": lambda: _AlwaysRegex("llama-3.1-70b"), "reparse": _Reparse}
    for per_read in (1, 16):
        base = None
        for name, make in variants.items():
            rate = run(make, per_read)
            base = base or rate
            print(f"{per_read:>2} event(s)/read  {name:<8} {rate:>12,.0f} chunks/s  "
                  f"({1e6 / rate:6.2f} us/chunk, {100 * (base / rate - 1):+5.1f}% time vs off)")
