"""A private event loop on its own thread, for database work that must not share the request loop.

Why: the group commit (`billing.recorder`) spends a few milliseconds of Python per batch
(SQLAlchemy, the driver's encoding, the daily rollups). On the request loop that time is a
stall every request arriving meanwhile waits out: at one connection it was the whole p99
(+5 ms on every endpoint, bench/RESULTS.md). On this thread the operating system and the GIL
interleave it with the request loop instead.

Hazard: objects bound to an event loop (an engine's connections, its pool) must be used only
on the loop that made them. Give this thread its own engine and never touch it from the
request loop; `run` is the only way in.

Hazard: the GIL hands over only after `sys.switchinterval` (5 ms by default) when a thread
wants it and another holds it, which would put the same 5 ms back on a request. `start`
lowers the interval (process-wide; it matters only when two threads both want the GIL).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# How long the request loop may wait for the GIL while this thread runs Python.
SWITCH_INTERVAL = 0.0005


class LoopThread:
    """`await thread.run(coro)` runs `coro` on the private loop and returns (or raises) its result."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        # Daemon: a process that exits without `stop` (os._exit in a test, a crash) is not held
        # up; what the thread was committing is still in the spool.
        self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop

    @property
    def running(self) -> bool:
        return self._loop is not None

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the private loop. Cancelling the caller cancels the work there too."""
        if self._loop is None:
            coro.close()
            raise RuntimeError(f"loop thread {self.name} is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def stop(self) -> None:
        """Stop the loop and join the thread (after its current step)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
