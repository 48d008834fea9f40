"""The deposit watcher: discover incoming USDT, wait for solidity, credit exactly once.

One pass: follow the contract's events and poll the due addresses (`discovery`), then verify
the due pending transactions and credit them (`crediting`). This module is the loop around
them: the lease, back-off, and per-row isolation.

Isolation: an error specific to one transaction (bad data, an amount out of range, a failing
write) never stops the pass: that row backs off with the error in its note and is parked as
`needs_review` after `max_failures` (at once when the amount is out of range or above the
approval ceiling), while the others are credited on time.

Only one watcher is active at a time: it holds a lease row in the database, renewed while
it works. The API answering 429/403/5xx or garbage stops the pass and backs off
exponentially; nothing was consumed, so the next pass reads the same data again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.background import repeat
from aigateway.deposits.client import ApiUnavailable, TronGridClient
from aigateway.deposits.config import DepositsConfig
from aigateway.deposits.crediting import MAX_BIGINT, Crediting, NeedsReview
from aigateway.deposits.discovery import Discovery
from aigateway.deposits.tables import deposit_addresses, deposit_history, deposit_leases, deposit_transactions
from aigateway.deposits.watch_state import PassStats, log
from aigateway.store.leases import Lease, holder_id
from aigateway.store.metadata import utcnow
from aigateway.timeutil import now_ms

__all__ = ["LEASE_NAME", "LeaseLost", "PassStats", "Watcher"]

LEASE_NAME = "watcher"


def _without_credentials(url: str) -> str:
    """Hazard: an operator may put a key in the URL (https://user:key@host); never log it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if "@" in rest else url


class LeaseLost(Exception):
    pass


class Watcher(Discovery, Crediting):
    """One deposit watcher: the loop, the lease and per-row isolation around discovery and crediting."""

    def __init__(self, engine: AsyncEngine, config: DepositsConfig, *, client: TronGridClient | None = None,
                 holder: str | None = None, use_lease: bool = True) -> None:
        self.engine = engine
        self.config = config
        self.client = client or TronGridClient(config.base_url, config.api_key(), timeout=config.http_timeout,
                                               requests_per_second=config.requests_per_second)
        self.holder = holder or holder_id()
        self.lease = Lease(engine, deposit_leases, LEASE_NAME, self.holder, config.lease_ttl) if use_lease else None
        self._contract = config.usdt_contract
        self._contract_hex = config.usdt_contract_hex
        self._backoff = 0.0
        self._backoff_until = 0.0
        self._active = False
        self._stop: asyncio.Event | None = None
        self.passes = 0
        self.backoffs = 0
        self._noted: set[str] = set()
        # address -> (address id, customer id): every deposit address, for matching event recipients
        self._ours: dict[str, tuple[int, int]] = {}
        self._ours_max_id = 0
        self._next_follow = 0.0
        self.last_pass: PassStats | None = None

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until `stop` is set; errors are logged, never fatal."""
        log.info("deposits watcher %s: watching %s USDT (%s) via %s", self.holder, self.config.network,
                 self._contract, _without_credentials(self.config.base_url))
        self._stop = stop
        try:
            await repeat(self.tick, lambda: max(self.config.tick, self._backoff_until - time.monotonic()),
                         "deposits-watcher", wake=stop, until=stop.is_set, run_first=True)
        finally:
            await self.close()

    async def close(self) -> None:
        await self.client.close()
        if self.lease is not None and self.lease.expires_ms:
            try:
                await self.lease.release()
            except Exception:  # the lease just expires on its own
                log.warning("deposits watcher: could not release the lease", exc_info=True)

    async def tick(self) -> bool:
        """One pass if this watcher holds the lease and is not backing off. True if it ran."""
        if time.monotonic() < self._backoff_until:
            return False
        try:
            if self.lease is not None and not await self.lease.acquire():
                if self._active:
                    log.info("deposits watcher %s: another watcher holds the lease; standing by", self.holder)
                self._active = False
                return False
            if not self._active:
                log.info("deposits watcher %s: active", self.holder)
            self._active = True
            await self.run_pass()
        except ApiUnavailable as exc:
            self._back_off(exc)
            return True
        except LeaseLost:
            log.warning("deposits watcher %s: lost the lease mid-pass; standing by", self.holder)
            self._active = False
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("deposits watcher pass failed; retrying next tick")
            return True
        self._backoff = 0.0
        return True

    def _back_off(self, exc: ApiUnavailable) -> None:
        cfg = self.config
        self._backoff = min(cfg.backoff_max, self._backoff * 2 if self._backoff else cfg.backoff_initial)
        wait = min(cfg.backoff_max, max(self._backoff, exc.retry_after or 0.0))
        self._backoff_until = time.monotonic() + wait
        self.backoffs += 1
        log.warning("deposits watcher: %s; backing off %.1fs (nothing is lost: the same data is read again)",
                    exc, wait)

    async def _keep_lease(self) -> None:
        if self.lease is not None and not self.lease.fresh() and not await self.lease.acquire():
            raise LeaseLost()

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def run_pass(self) -> PassStats:
        stats = PassStats()
        followed = False
        if self.config.follow_events and time.monotonic() >= self._next_follow:
            await self._keep_lease()
            await self.follow_events(stats)
            self._next_follow = time.monotonic() + self.config.events_interval
            followed = True
        now = now_ms()
        for row in await self._due_addresses(now, fallback=followed):
            if self._stopping():
                break
            await self._keep_lease()
            await self._discover_guarded(row, stats)
        for row in await self._due_pending(now_ms()):
            if self._stopping():
                break
            await self._keep_lease()
            await self.verify_guarded(row, stats)
        self.passes += 1
        self.last_pass = stats
        return stats

    # -- per-row isolation ------------------------------------------------------------------
    # Hazard: an error specific to one row must never stop the pass, or one bad transfer that
    # sorts first blocks crediting for every customer. Only API outages and a lost lease stop it.

    async def _discover_guarded(self, row: Row[Any], stats: PassStats) -> None:
        try:
            await self.discover(row, stats)
        except (ApiUnavailable, LeaseLost, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("deposits: discovery for %s failed; moving on to the next address", row.address)
            async with self.engine.begin() as conn:  # to the back of the queue
                await conn.execute(update(deposit_addresses).where(deposit_addresses.c.id == row.id)
                                   .values(last_polled_ms=now_ms()))

    async def verify_guarded(self, row: Row[Any], stats: PassStats | None = None) -> str:
        """`verify` with per-row errors caught: backed off, then parked as needs_review."""
        try:
            return await self.verify(row, stats)
        except (ApiUnavailable, LeaseLost, asyncio.CancelledError):
            raise
        except NeedsReview as exc:
            return await self.park(row, str(exc))
        except Exception as exc:
            return await self._row_failed(row, exc)

    async def _row_failed(self, row: Row[Any], exc: Exception) -> str:
        cfg = self.config
        failures = (row.failures or 0) + 1
        reason = f"{type(exc).__name__}: {exc}"[:500]
        if failures >= cfg.max_failures:
            log.warning("deposits: tx %s failed %d times (%s); parked for review", row.tx_id, failures, reason)
            return await self.park(row, f"parked after {failures} failures: {reason}", failures=failures)
        delay = min(cfg.retry_max, cfg.retry_initial * 2 ** (failures - 1))
        log.warning("deposits: tx %s failed (%d/%d): %s; retrying in %.0fs", row.tx_id, failures,
                    cfg.max_failures, reason, delay)
        async with self.engine.begin() as conn:
            await conn.execute(update(deposit_transactions).where(deposit_transactions.c.id == row.id)
                               .where(deposit_transactions.c.status == "pending")
                               .values(failures=failures, checks=deposit_transactions.c.checks + 1,
                                       note=f"failure {failures}/{cfg.max_failures}: {reason}; retry in {delay:.0f}s",
                                       next_check_ms=now_ms() + int(delay * 1000)))
        return "pending"

    async def park(self, row: Row[Any], reason: str, *, failures: int | None = None) -> str:
        """needs_review, with the reason in the note and in the deposit's history."""
        log.warning("deposits: tx %s to %s needs review: %s", row.tx_id, row.address, reason)
        values = {"status": "needs_review", "note": reason[:2000], "resolved_at": utcnow(),
                  "checks": deposit_transactions.c.checks + 1}
        if failures is not None:
            values["failures"] = failures
        async with self.engine.begin() as conn:
            parked = (await conn.execute(update(deposit_transactions).where(deposit_transactions.c.id == row.id)
                                         .where(deposit_transactions.c.status == "pending").values(**values))).rowcount
            if parked:
                await conn.execute(deposit_history.insert().values(tx_id=row.tx_id, action="parked",
                                                                   actor=f"watcher {self.holder}"[:120],
                                                                   note=reason[:2000], created_at=utcnow()))
        return "needs_review"


    # -- operator helpers -------------------------------------------------------------------

    async def poll_address(self, address: str) -> PassStats:
        """Discover and verify one address now (used by `admin deposits rescan --now`)."""
        stats = PassStats()
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(deposit_addresses).where(deposit_addresses.c.address == address))).one()
        await self.discover(row, stats)
        for pending in await self._due_pending(MAX_BIGINT, address_id=row.id):  # all of them, now
            await self.verify_guarded(pending, stats)
        return stats
