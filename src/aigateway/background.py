"""The one loop runner: run a job every few seconds for the life of the app, logging (not dying on) errors.

Invariant: a job that raises is logged and run again at its next turn; only cancelling the
task (or `until` turning true) ends the loop. Every periodic loop of the gateway uses it:
the refreshes (`Periodic`), the usage recorder's group commit, the Redis wallet's heartbeat,
the deposits watcher. A loop with other semantics (a bounded retry, a stream's read loop)
is not one of these and keeps its own `while`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def repeat(job: Callable[[], Awaitable[object]], interval: float | Callable[[], float], name: str, *,
                 wake: asyncio.Event | None = None, until: Callable[[], bool] | None = None,
                 run_first: bool = False) -> None:
    """Wait `interval` seconds, run `job`, again, until the task is cancelled or `until()` is true.

    `interval` may be a function (a delay that changes, e.g. a back-off). Setting `wake` ends a
    wait early (it is cleared for the next one); `until` is checked before each wait and after
    it, so setting `wake` after `until` turns true ends the loop at once. `run_first` runs the
    job before the first wait.
    """
    delay: Callable[[], float] = interval if callable(interval) else (lambda: interval)
    waiting = not run_first
    task = asyncio.current_task()

    def stop_if_cancelled() -> None:
        # Hazard: a job may swallow the CancelledError meant for this task (Python 3.11's
        # `asyncio.wait_for` returns an inner result that was ready when the cancel came, and
        # library code built on it can do the same; so can the `wake` wait below). The loop would
        # then go on for ever and the clean-up that cancelled it (`Periodic.stop`, a shutdown)
        # would wait for it for ever: seen in CI as a replica's shutdown hung past 60 s, the
        # balance refresh (PostgreSQL and Redis calls) still looping. A cancel that was asked
        # for and never withdrawn (asyncio.timeout withdraws its own) ends the loop.
        if task is not None and task.cancelling():
            raise asyncio.CancelledError

    while until is None or not until():
        stop_if_cancelled()
        if waiting:
            if wake is None:
                await asyncio.sleep(delay())
            else:
                try:
                    await asyncio.wait_for(wake.wait(), delay())
                except TimeoutError:
                    pass
                if until is not None and until():
                    return
                wake.clear()
        waiting = True
        stop_if_cancelled()
        try:
            await job()
        except Exception:
            log.exception("background job %s failed; retrying in %.1fs", name, delay())


class Periodic:
    """Jobs that run every few seconds until `stop` (an app's start-up adds them, its clean-up stops them)."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def every(self, seconds: float, job: Callable[[], Awaitable[object]], name: str) -> None:
        self._tasks.append(asyncio.create_task(repeat(job, seconds, name), name=name))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
