"""In-memory API key lookups, so a request costs no database round trip for auth.

Hits are served from a dict. A refresher re-reads keys changed since its last
pass every `refresh_interval` seconds, so a revocation made anywhere (CLI,
another replica) takes effect within about that long; a revocation made in
this process (portal) calls `forget` and takes effect at once. Unknown keys
are remembered briefly (bounded) so a flood of bad keys cannot hammer the DB.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.keys import hash_key
from aigateway.accounts.tables import api_keys, customers
from aigateway.singleflight import load_once
from aigateway.store.metadata import utcnow


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: int
    customer_id: int
    allowed_models: frozenset[str] | None

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


_QUERY = select(
    api_keys.c.id,
    api_keys.c.key_hash,
    api_keys.c.customer_id,
    api_keys.c.allowed_models,
    api_keys.c.revoked_at,
    customers.c.status,
).join(customers, customers.c.id == api_keys.c.customer_id)
# The refresh's statement, built once (it runs every second on the request loop).
_CHANGED = _QUERY.where((api_keys.c.updated_at >= bindparam("since")) | (customers.c.updated_at >= bindparam("since")))


def _to_info(row: Row[*tuple[Any, ...]]) -> KeyInfo | None:
    if row.revoked_at is not None or row.status != "active":
        return None
    allowed = frozenset(orjson.loads(row.allowed_models)) if row.allowed_models else None
    return KeyInfo(key_id=row.id, customer_id=row.customer_id, allowed_models=allowed)


class KeyCache:
    def __init__(self, engine: AsyncEngine, *, refresh_interval: float = 1.0, negative_ttl: float = 5.0,
                 negative_max: int = 10_000) -> None:
        self._engine = engine
        self._known: dict[str, KeyInfo] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._loading: dict[str, asyncio.Future[KeyInfo | None]] = {}
        self._negative_ttl = negative_ttl
        self._negative_max = negative_max
        self.refresh_interval = refresh_interval
        self._since = utcnow()

    async def lookup(self, secret: str) -> KeyInfo | None:
        key_hash = hash_key(secret)
        info = self._known.get(key_hash)
        if info is not None:
            return info
        seen = self._unknown.get(key_hash)
        if seen is not None and time.monotonic() - seen < self._negative_ttl:
            return None
        return await load_once(self._loading, key_hash, lambda: self._load(key_hash))

    async def _load(self, key_hash: str) -> KeyInfo | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_QUERY.where(api_keys.c.key_hash == key_hash))).first()
        info = _to_info(row) if row is not None else None
        if info is None:
            self._unknown[key_hash] = time.monotonic()
            while len(self._unknown) > self._negative_max:
                self._unknown.popitem(last=False)
        else:
            self._known[key_hash] = info
        return info

    def forget(self, key_hash: str) -> None:
        """Drop a key at once (it was revoked here)."""
        self._known.pop(key_hash, None)
        self._unknown.pop(key_hash, None)

    async def refresh(self) -> None:
        """Apply keys and customers changed since the last pass (revocations, new keys)."""
        started = utcnow()
        # Overlap the window a little: clocks of replicas and commit order differ.
        since = self._since - timedelta(seconds=2)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_CHANGED, {"since": since})).all()
        for row in rows:
            info = _to_info(row)
            if info is None:
                self._known.pop(row.key_hash, None)
            elif row.key_hash in self._known:
                self._known[row.key_hash] = info
            self._unknown.pop(row.key_hash, None)
        self._since = started
