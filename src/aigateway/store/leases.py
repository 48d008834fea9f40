"""Leases: one process at a time does a job (the deposit watcher, a price fetch).

A lease is a row (name, holder, expiry in epoch ms). Taking it is one conditional
UPDATE (held by me, or expired), so two processes racing on a shared database
cannot both win; a holder that dies simply lets it expire. Hazard: expiry uses
each host's wall clock, so replicas need synchronised clocks (NTP).
"""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import Table, or_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.store.bulk import insert_ignoring_duplicates
from aigateway.timeutil import now_ms


def holder_id() -> str:
    """Who holds a lease: host, process and a random tag (two workers of one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The row `name` of `table` (columns name, holder, expires_ms): whoever holds it unexpired is active."""

    def __init__(self, engine: AsyncEngine, table: Table, name: str, holder: str, ttl: float) -> None:
        self._engine = engine
        self._table = table
        self._name = name
        self.holder = holder
        self._ttl_ms = int(ttl * 1000)
        self.expires_ms = 0

    async def acquire(self) -> bool:
        """Take or renew the lease; False while another holder has it."""
        t = self._table
        now = now_ms()
        expires = now + self._ttl_ms
        async with self._engine.begin() as conn:
            await conn.execute(insert_ignoring_duplicates(conn, t).values(
                name=self._name, holder=self.holder, expires_ms=expires))
            result = await conn.execute(
                update(t)
                .where(t.c.name == self._name)
                .where(or_(t.c.holder == self.holder, t.c.expires_ms < now))
                .values(holder=self.holder, expires_ms=expires)
            )
        held = result.rowcount == 1
        self.expires_ms = expires if held else 0
        return held

    def fresh(self) -> bool:
        """Held with at least half the TTL left (otherwise renew before more work)."""
        return self.expires_ms - now_ms() > self._ttl_ms // 2

    async def release(self) -> None:
        t = self._table
        async with self._engine.begin() as conn:
            await conn.execute(update(t).where(t.c.name == self._name)
                               .where(t.c.holder == self.holder).values(expires_ms=0))
        self.expires_ms = 0
