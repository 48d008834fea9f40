"""Run an aiohttp app for real on 127.0.0.1 in a background thread with its own event loop.

Tests then talk to it over real sockets, with the official `openai` SDK or
any HTTP client, exactly as a customer would.
"""

from __future__ import annotations

import asyncio
import io
import random
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

from aiohttp import web

from aigateway.api.protocol import GatewayRunner


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, for a process the test starts.

    Hazard: the port is free only when this returns; the process binds it later. Port 0 would
    hand out one from the kernel's ephemeral range, where every outgoing connection also takes
    its local port, so under load another connection could take it in between ("address
    already in use"). Ports are picked below that range instead, where only listeners bind,
    and checked by binding them. (`reserve_port` closes the gap entirely for servers this
    process runs itself.)
    """
    low, _ = _ephemeral_range()
    if low > 11_000:
        for _ in range(200):
            port = random.randrange(10_000, low)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reserve_port() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1 and kept open until the server listens on it.

    Hazard: `free_port` closes its socket, and until the server binds, anything else on the machine
    may take the port (another test worker's server, or an outgoing connection's ephemeral port):
    a test failed with "address already in use" that way. A reserved port cannot be taken.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerThread:
    def __init__(self, make_app: Callable[[], web.Application], port: int | None = None,
                 sock: socket.socket | None = None) -> None:
        if port is None and sock is None:
            sock = reserve_port()
        self._sock = sock
        self.port = sock.getsockname()[1] if sock is not None else port
        self.url = f"http://127.0.0.1:{self.port}"
        self._make_app = make_app
        self._started: Future = Future()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self, timeout: float = 30) -> ServerThread:
        self._thread.start()
        self._started.result(timeout)
        return self

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # report start-up failures to the test
            self._started.set_exception(exc)
            return
        self._started.set_result(True)
        self.loop.run_forever()

    async def _start(self) -> None:
        self.app = self._make_app()
        # The runner `aigateway serve` uses, so parse errors are answered as in production.
        self._runner = GatewayRunner(self.app, access_log=None, handler_cancellation=False)
        await self._runner.setup()
        if self._sock is not None:
            await web.SockSite(self._runner, self._sock).start()
        else:
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def run(self, coro: Awaitable[Any], timeout: float = 60) -> Any:
        """Run a coroutine on the server's loop (e.g. a database query with its engine)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _stacks(self) -> str:
        out = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(limit=8, file=out)
        return out.getvalue()

    def stop(self) -> None:
        if self.loop is None or not self.loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(60)
        except TimeoutError:
            # Say what the clean-up is stuck on: a bare TimeoutError from CI tells nothing.
            stacks = asyncio.run_coroutine_threadsafe(self._stacks(), self.loop).result(10)
            raise TimeoutError(f"the server's clean-up did not end within 60 s; its tasks:\n{stacks}") from None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
