"""The wallet's hot scripts, sent together: one Redis round trip for the calls of one loop pass.

Every request places a hold and settles it (two script calls). Sent one by one, each call
costs the gateway a pool checkout, a send, a wake-up for its reply and a release: ~80-100 µs
of CPU on the project's 2-core VM, the largest share of a request with the Redis wallet. Calls
made in the same event-loop pass are instead queued and sent as one pipeline (no MULTI): 32
script calls that way cost ~20-30 µs of CPU each (`bench/wallet_cost.py`, RESULTS.md).

Invariant: only the transport is shared. Each call is still its own atomic script (within a batch,
in the order the calls were made; across batches, as across single calls before, no order is
promised: hold members and sequenced pending writes make it irrelevant), and each caller gets its
own reply or its own error, exactly as if sent alone:
a per-call error (a script error, `NOSCRIPT`) goes to that caller only; a connection error fails
every call of the batch, as it would have failed each of them. The client's one retry on a dropped
connection may run a batch's scripts twice; the wallet's scripts are idempotent (hold members,
sequenced pending writes), which is what made that retry safe for single calls already.

Hazard: `NOSCRIPT` (Redis restarted and forgot the scripts) is answered per call; that call is
sent again on its own through redis-py's script object, which loads the script and retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

Keys = Sequence[str]
Args = Sequence[str | int | float]


class _Call:
    __slots__ = ("script", "keys", "args", "future")

    def __init__(self, script: AsyncScript, keys: Keys, args: Args, future: asyncio.Future[Any]) -> None:
        self.script, self.keys, self.args, self.future = script, keys, args, future


class ScriptPipeline:
    """Queues script calls and sends those of one loop pass in one round trip."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._queue: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()  # batches on the wire (kept referenced)

    def script(self, source: str) -> PipelinedScript:
        return PipelinedScript(self, self._client.register_script(source))

    def call(self, script: AsyncScript, keys: Keys, args: Args) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Call(script, keys, args, future))
        if len(self._queue) == 1:  # the first call of this pass schedules the send
            loop.call_soon(self._send_queued)
        return future

    def _send_queued(self) -> None:
        if not self._queue:  # already sent by `drain`
            return
        batch, self._queue = self._queue, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def drain(self) -> None:
        """Wait for the batches already sent (before the client is closed)."""
        while self._sending or self._queue:
            if self._queue:
                self._send_queued()
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            await self._run(batch)
        finally:  # cancelled (loop shutting down): no caller may wait forever
            for call in batch:
                if not call.future.done():
                    call.future.cancel()

    async def _run(self, batch: list[_Call]) -> None:
        if len(batch) == 1:  # alone: no pipeline to build
            call = batch[0]
            results: list[Any] = [await _outcome(call.script(keys=call.keys, args=call.args))]
        else:
            pipe = self._client.pipeline(transaction=False)
            for call in batch:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            try:
                results = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # the connection failed: every call of the batch failed
                results = [exc] * len(batch)
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):
                result = await _outcome(call.script(keys=call.keys, args=call.args))
            if call.future.done():  # its caller was cancelled: the script may still have run
                continue
            if isinstance(result, BaseException):
                call.future.set_exception(result)
            else:
                call.future.set_result(result)


async def _outcome(pending: Any) -> Any:
    """The reply of one call, or the exception it raised (as a value)."""
    try:
        return await pending
    except Exception as exc:
        return exc


class PipelinedScript:
    """A Lua script whose calls go through a `ScriptPipeline` (same call shape as redis-py's)."""

    __slots__ = ("_pipeline", "_script")

    def __init__(self, pipeline: ScriptPipeline, script: AsyncScript) -> None:
        self._pipeline, self._script = pipeline, script

    @property
    def direct(self) -> AsyncScript:
        """The same script, called on its own (e.g. inside an explicit pipeline)."""
        return self._script

    def __call__(self, keys: Keys = (), args: Args = ()) -> asyncio.Future[Any]:
        return self._pipeline.call(self._script, keys, args)
