"""Small asyncio load client (aiohttp), run as a subprocess on the load core.

Modes (all print one JSON object on stdout):
  rate    open loop: requests at a fixed rate; latency counted from the scheduled
          send time, so a slow target cannot slow the arrivals down
  stream  open loop: streaming requests at a fixed rate; time to first token,
          gaps between content chunks, lost chunks (expected - received)
  count   closed loop: exactly N requests at concurrency C, all awaited
          (exact success count for the ledger gate)
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time

import aiohttp


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


async def one(session, url, body, headers) -> bool:
    try:
        async with session.post(url, data=body, headers=headers) as r:
            await r.read()
            return 200 <= r.status < 300
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False


async def mode_rate(a, session, url, body, headers) -> dict:
    lat, late, ok = [], [], 0
    n = int(a.rate * a.seconds)
    t0 = time.perf_counter() + 0.05

    async def fire(i):
        nonlocal ok
        due = t0 + i / a.rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        late.append(time.perf_counter() - due)
        if await one(session, url, body, headers):
            ok += 1
            lat.append(time.perf_counter() - due)

    await asyncio.gather(*(fire(i) for i in range(n)))
    return {"sent": n, "ok": ok, "errors": n - ok, "p50_ms": ms(pct(lat, 50)),
            "p99_ms": ms(pct(lat, 99)), "max_ms": ms(max(lat, default=None)),
            "client_late_p99_ms": ms(pct(late, 99))}


async def read_stream(session, url, body, headers, due):
    """Returns (ok, ttft, gaps, content_chunks, saw_usage, saw_done)."""
    gaps, count, ttft, last, usage, done = [], 0, None, None, False, False
    try:
        async with session.post(url, data=body, headers=headers) as r:
            if r.status != 200:
                await r.read()
                return False, None, [], 0, False, False
            async for raw in r.content:
                now = time.perf_counter()
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                ev = json.loads(data)
                if ev.get("usage"):
                    usage = True
                for ch in ev.get("choices") or ():
                    if (ch.get("delta") or {}).get("content"):
                        count += 1
                        if ttft is None:
                            ttft = now - due
                        else:
                            gaps.append(now - last)
                        last = now
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return False, ttft, gaps, count, usage, done
    return True, ttft, gaps, count, usage, done


async def mode_stream(a, session, url, body, headers) -> dict:
    n = int(a.rate * a.seconds)
    t0 = time.perf_counter() + 0.05
    res = []

    async def fire(i):
        due = t0 + i / a.rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        res.append(await read_stream(session, url, body, headers, due))

    await asyncio.gather(*(fire(i) for i in range(n)))
    ok = [r for r in res if r[0]]
    ttfts = [r[1] for r in ok if r[1] is not None]
    gaps = [g for r in ok for g in r[2]]
    received = sum(r[3] for r in res)
    return {"sent": n, "ok": len(ok), "errors": n - len(ok),
            "ttft_p50_ms": ms(pct(ttfts, 50)), "ttft_p99_ms": ms(pct(ttfts, 99)),
            "gap_p50_ms": ms(pct(gaps, 50)), "gap_p99_ms": ms(pct(gaps, 99)),
            "gap_max_ms": ms(max(gaps, default=None)),
            "chunks_expected": n * a.chunks, "chunks_received": received,
            "lost_chunks": n * a.chunks - received,
            "usage_missing": sum(1 for r in ok if not r[4]),
            "done_missing": sum(1 for r in ok if not r[5])}


async def mode_count(a, session, url, body, headers) -> dict:
    sem, ok = asyncio.Semaphore(a.concurrency), 0

    async def fire():
        nonlocal ok
        async with sem:
            good = await one(session, url, body, headers)
            ok += good  # (not `ok += await ...`: that reads ok before awaiting)

    t = time.perf_counter()
    await asyncio.gather(*(fire() for _ in range(a.n)))
    return {"sent": a.n, "ok": ok, "errors": a.n - ok, "seconds": time.perf_counter() - t}


async def main(a) -> dict:
    with open(a.body_file, "rb") as f:
        body = f.read()
    headers = {"Content-Type": "application/json"}
    if a.token:
        headers["Authorization"] = f"Bearer {a.token}"
    conn = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=a.timeout)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        fn = {"rate": mode_rate, "stream": mode_stream, "count": mode_count}[a.mode]
        return await fn(a, s, a.url, body, headers)


def cli() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["rate", "stream", "count"])
    p.add_argument("--url", required=True)
    p.add_argument("--body-file", required=True)
    p.add_argument("--token", default="")
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    # The client's own collector must not pause the measurement: with 1,000 streams open its full
    # passes took 40-46 ms (a gc-callback probe), delaying every chunk that arrived meanwhile for
    # every target alike. What it allocates per chunk is freed by reference counting; a run is
    # seconds long, so the few cycles aiohttp leaves are collected after it.
    gc.collect()
    gc.freeze()
    gc.disable()
    result = asyncio.run(main(a))
    gc.enable()
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
