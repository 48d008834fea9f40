"""Plug deposits into the app: `app[DEPOSITS]` for the portal, and the watcher.

Configured = a `[deposits]` section with `enabled` (default true). The watcher runs in the
gateway unless `run_watcher = false` (then run `aigateway deposits-watcher` apart); with
several replicas each may run one, and the lease keeps only one active.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from aigateway.appkeys import CONFIG, DEPOSITS, ENGINE
from aigateway.deposits.config import deposits_config
from aigateway.deposits.service import DepositsService
from aigateway.deposits.watcher import Watcher

log = logging.getLogger(__name__)


def setup(app: web.Application) -> None:
    config = deposits_config(app[CONFIG].deposits)  # a bad section fails start-up, loudly
    if config is None:
        return
    service = DepositsService(config)
    app[DEPOSITS] = service

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        service.bind(app[ENGINE])
        await service.check_addresses()
        task = stop = None
        if config.run_watcher:
            watcher = Watcher(app[ENGINE], config)
            service.watcher = watcher
            stop = asyncio.Event()
            task = asyncio.create_task(watcher.run(stop), name="deposits-watcher")
        else:
            log.info("deposits: the watcher runs apart (`aigateway deposits-watcher`); not started here")
        yield
        # Cleaned up before the core (engine) in reverse order: let a credit in flight finish.
        if task is not None and stop is not None:
            stop.set()
            try:
                await asyncio.wait_for(task, 10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                log.exception("deposits watcher ended with an error")
        await service.close()

    app.cleanup_ctx.append(lifecycle)
