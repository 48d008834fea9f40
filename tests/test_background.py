"""The one loop runner (aigateway.background.repeat): a failing job is logged and run again; `wake`
cuts a wait short; `until` ends the loop; `Periodic.stop` cancels its jobs, even a job that
swallows the cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aigateway.background import Periodic, repeat


async def _poll(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_failing_job_is_logged_and_run_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="aigateway.background"):
        task = asyncio.create_task(repeat(job, 0.001, "flaky"))
        await _poll(lambda: len(runs) >= 4)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    failures = [r for r in caplog.records if "background job flaky failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)
    assert task.cancelled()


async def test_wake_cuts_the_wait_short_and_until_ends_the_loop() -> None:
    wake = asyncio.Event()
    done = False
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)

    task = asyncio.create_task(repeat(job, 3600, "woken", wake=wake, until=lambda: done))
    wake.set()  # an hour's wait, cut short
    await _poll(lambda: len(runs) == 1)
    assert not wake.is_set()  # cleared for the next wait
    done = True
    wake.set()
    await asyncio.wait_for(task, 5)  # ends without running the job again
    assert len(runs) == 1


async def test_run_first_and_a_delay_that_changes() -> None:
    stop = asyncio.Event()
    delays: list[float] = []
    runs: list[int] = []

    def delay() -> float:
        delays.append(0.001)
        return 0.001

    async def job() -> bool:
        runs.append(1)
        if len(runs) == 3:
            stop.set()
        return True

    await asyncio.wait_for(repeat(job, delay, "watcher", wake=stop, until=stop.is_set, run_first=True), 5)
    assert len(runs) == 3 and len(delays) == 2  # ran before the first wait; the stop ends the last one
    assert stop.is_set()  # a stop event used as `wake` is never cleared once set


async def test_periodic_stop_cancels_its_jobs() -> None:
    periodic = Periodic()
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)

    periodic.every(0.001, job, "tick")
    tasks = list(periodic._tasks)
    await _poll(lambda: len(runs) >= 2)
    await periodic.stop()
    assert [t.get_name() for t in tasks] == ["tick"] and all(t.cancelled() for t in tasks)


async def test_periodic_stop_ends_a_job_that_swallows_the_cancellation() -> None:
    """As Python 3.11's wait_for does when the inner call was already done: the CancelledError
    never reaches the loop. Before the fix, stop() waited for ever."""
    periodic = Periodic()
    inside = asyncio.Event()
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)
        inside.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return  # swallowed: the task stays "cancelling" and the loop would carry on

    periodic.every(0.001, job, "swallower")
    [task] = periodic._tasks
    await asyncio.wait_for(inside.wait(), 5)
    await asyncio.wait_for(periodic.stop(), 5)
    assert task.cancelled() and runs == [1]


async def test_a_cancellation_withdrawn_inside_the_job_does_not_end_the_loop() -> None:
    """asyncio.timeout() cancels and then uncancels its own task: that is no request to stop."""
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)
        try:
            async with asyncio.timeout(0.001):
                await asyncio.sleep(3600)
        except TimeoutError:
            pass

    task = asyncio.create_task(repeat(job, 0.001, "timeouts"))
    await _poll(lambda: len(runs) >= 3)
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
