"""What the watcher's parts share: the per-pass counters and the state every part reads.

The watcher is one object made of three parts (`discovery`, `crediting`, and the loop in
`watcher`), so that one process holds one in-memory address set, one API client and one
lease. This base declares that state once, typed, so each part says what it relies on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.deposits.client import TronGridClient
from aigateway.deposits.config import DepositsConfig

log = logging.getLogger("aigateway.deposits.watcher")


@dataclass(slots=True)
class PassStats:
    """What one pass did (logged by `admin deposits watch --once`, asserted by tests)."""

    events_pages: int = 0
    addresses: int = 0
    pages: int = 0
    seen: int = 0
    checked: int = 0
    credited: int = 0


class WatcherState:
    """The state shared by the watcher's parts; `Watcher.__init__` fills it."""

    engine: AsyncEngine
    config: DepositsConfig
    client: TronGridClient
    holder: str
    _contract: str  # the USDT contract, base58
    _contract_hex: str  # the same, 20-byte hex without the 41 prefix
    # address -> (address id, customer id): every deposit address, for matching event recipients
    _ours: dict[str, tuple[int, int]]
    _ours_max_id: int
    _noted: set[str]  # log lines already written at info level (log once, not every poll)

    def _note_once(self, key: str, message: str, *args: object) -> None:
        if key in self._noted:
            log.debug(message, *args)
            return
        if len(self._noted) > 10_000:
            self._noted.clear()
        self._noted.add(key)
        log.info(message, *args)
