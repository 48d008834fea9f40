"""Holds against a customer's balance, without a database round trip per request.

Before a request is forwarded, a hold for the most it can cost is placed;
the request is refused when balance - unflushed charges - open holds cannot
cover it. When the request ends the hold is settled to the actual cost.

`LocalWallet` keeps this state in the process: right for one gateway process
(the SQLite default). `billing.redis_wallet.RedisWallet` keeps it in Redis for
several replicas. Both share this interface; a crashed process's holds die
with it (local) or expire (Redis).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import customers
from aigateway.singleflight import load_once
from aigateway.store.metadata import utcnow


class InsufficientBalance(Exception):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"needs {needed}, available {available}")
        self.needed = needed
        self.available = available


class WalletUnavailable(Exception):
    """No hold can be placed right now: the shared store (Redis) is unreachable, or it lost its
    data and the replicas are still re-registering their open holds.

    The request must be refused (503 with `Retry-After`), never let through unheld: a hold
    placed against incomplete state could overdraw the balance.
    """

    def __init__(self, reason: str, retry_after: int = 2) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = max(1, retry_after)


@dataclass(slots=True)
class Hold:
    id: int
    customer_id: int
    amount: int
    expires_at: float


class Wallet(Protocol):
    """What the API and the recorder need from a wallet (LocalWallet, RedisWallet).

    `hold` (and `available`) raise InsufficientBalance, or WalletUnavailable when the state they
    need cannot be reached; `release` and `settle` never raise over a store outage (the usage
    record must still be written), they repair the store later.

    `lock` orders balance snapshots: the recorder holds it from a commit until `flushed` has
    passed that commit's balances on (UsageRecorder._write). LocalWallet's own balance reads
    take it too, so a snapshot read before a commit is never installed after it; RedisWallet's
    snapshot versions and sequence numbers order writers already, so there it only serialises
    the recorder's batches.
    """

    @property
    def lock(self) -> asyncio.Lock: ...

    async def hold(self, customer_id: int, amount: int) -> Hold: ...
    async def release(self, hold: Hold) -> None: ...
    async def settle(self, hold: Hold, cost: int) -> None: ...
    async def flushed(self, customer_id: int, amount: int, balance: int, version: int) -> None: ...
    async def available(self, customer_id: int) -> int: ...
    async def refresh(self) -> None: ...
    # After the usage spool of this replica's previous run was replayed and committed.
    async def restarted(self) -> None: ...
    async def close(self) -> None: ...


@dataclass(slots=True)
class _Account:
    balance: int  # as last committed in the database
    version: int
    unflushed: int = 0  # settled charges not yet committed
    held: int = 0
    holds: dict[int, Hold] = field(default_factory=dict)

    @property
    def available(self) -> int:
        return self.balance - self.unflushed - self.held


class LocalWallet:
    def __init__(self, engine: AsyncEngine, *, hold_ttl: float = 900.0) -> None:
        self._engine = engine
        self._hold_ttl = hold_ttl
        self._accounts: dict[int, _Account] = {}
        self._loading: dict[int, asyncio.Future[_Account]] = {}
        self._ids = itertools.count(1)
        # Serialises balance snapshots: a refresh never interleaves with a flush.
        self.lock = asyncio.Lock()
        self._since = utcnow()

    async def _account(self, customer_id: int) -> _Account:
        account = self._accounts.get(customer_id)
        if account is not None:
            return account
        return await load_once(self._loading, customer_id, lambda: self._load(customer_id))

    async def _load(self, customer_id: int) -> _Account:
        async with self.lock:
            async with self._engine.connect() as conn:
                row = (await conn.execute(
                    select(customers.c.balance, customers.c.balance_version).where(customers.c.id == customer_id)
                )).one()
            account = self._accounts.setdefault(customer_id, _Account(row.balance, row.balance_version))
        return account

    async def hold(self, customer_id: int, amount: int) -> Hold:
        account = await self._account(customer_id)
        if amount > account.available:
            self._expire(account)
            if amount > account.available:
                raise InsufficientBalance(amount, max(account.available, 0))
        hold = Hold(next(self._ids), customer_id, amount, time.monotonic() + self._hold_ttl)
        account.holds[hold.id] = hold
        account.held += amount
        return hold

    def _drop(self, hold: Hold) -> _Account | None:
        account = self._accounts.get(hold.customer_id)
        if account is not None and account.holds.pop(hold.id, None) is not None:
            account.held -= hold.amount
            return account
        return None

    async def release(self, hold: Hold) -> None:
        self._drop(hold)

    async def settle(self, hold: Hold, cost: int) -> None:
        account = self._drop(hold) or self._accounts.get(hold.customer_id)
        if account is not None:
            account.unflushed += cost

    async def flushed(self, customer_id: int, amount: int, balance: int, version: int) -> None:
        """The recorder committed `amount` of charges; the database now says `balance`."""
        account = self._accounts.get(customer_id)
        if account is None:
            return
        account.unflushed -= amount
        if version > account.version:
            account.balance, account.version = balance, version

    async def available(self, customer_id: int) -> int:
        return (await self._account(customer_id)).available

    def _expire(self, account: _Account) -> None:
        now = time.monotonic()
        for hold in [h for h in account.holds.values() if h.expires_at < now]:
            self._drop(hold)

    async def refresh(self) -> None:
        """Pick up balance changes made elsewhere (credits from the CLI, deposits, other tools)."""
        if not self._accounts:
            return
        started = utcnow()
        since = self._since - timedelta(seconds=2)
        async with self.lock:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(
                    select(customers.c.id, customers.c.balance, customers.c.balance_version)
                    .where(customers.c.updated_at >= since)
                )).all()
            for row in rows:
                account = self._accounts.get(row.id)
                if account is not None and row.balance_version > account.version:
                    account.balance, account.version = row.balance, row.balance_version
        for account in self._accounts.values():
            self._expire(account)
        self._since = started

    async def restarted(self) -> None:
        """Nothing to clear: the previous run's state died with it; the replay is in the balances."""

    async def close(self) -> None:
        """Nothing to release: the state dies with the process."""
