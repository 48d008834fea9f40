"""One load per key at a time: concurrent callers asking for the same key share one load.

Invariant: while a load for `key` runs, `loading[key]` holds its future and every caller awaits
that same future (shielded, so one caller being cancelled does not cancel the load for the
others); the entry is removed when the load ends, so a failed load is retried by the next caller.
Used by the key cache and the wallets, which would otherwise each read the database once per
concurrent request on a cold key or customer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


async def load_once(loading: dict[K, asyncio.Future[V]], key: K, load: Callable[[], Awaitable[V]]) -> V:
    """Await the load of `key` already under way in `loading`, or start `load()` and record it there."""
    pending = loading.get(key)
    if pending is None:
        pending = asyncio.ensure_future(load())
        loading[key] = pending
        pending.add_done_callback(lambda _f: loading.pop(key, None))
    return await asyncio.shield(pending)
