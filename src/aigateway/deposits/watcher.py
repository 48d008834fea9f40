"""The deposit watcher: discover incoming USDT, wait for solidity, credit exactly once.

One pass:
0. following - every `events_interval`, read the USDT contract's confirmed Transfer events
   since a persisted cursor (minus a small overlap), in block order, page by page, and
   record those whose recipient is in the in-memory set of our addresses as pending. The
   set is topped up from `deposit_addresses` (new ids only) before each read, so the cost
   of a pass depends on the chain's USDT traffic, never on the number of customers.
1. discovery - for each address that is due (Deposit tab opened recently: every
   `hot_interval`; otherwise every `all_interval`), list incoming transfers of the USDT
   contract since the address's cursor (minus an overlap), page by page, and record each
   in `deposit_transactions` as pending. Recording is idempotent, so overlaps, duplicates
   across pages and re-polls add nothing. The cursor only moves after a page is recorded.
2. verification - for each pending transaction that is due, ask the solidity node for its
   TransactionInfo. `{}` = not solidified yet: check again later. Otherwise credit each log
   that is a Transfer of the configured USDT contract to this address, but only if the
   receipt says SUCCESS; anything else is rejected and recorded with the reason.
3. crediting - the `deposits` row (unique tx_id + log_index) and the ledger entry
   (unique reference 'deposit:<tx_id>:<log_index>') are written in ONE transaction, so a
   crash, a restart or a second watcher racing this one can never credit twice, and a
   crash before the commit just leaves the transaction pending for the next pass.

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
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import customers
from aigateway.background import repeat
from aigateway.billing.ledger import post_entry
from aigateway.deposits.client import ApiUnavailable, SeenTransfer, TronGridClient
from aigateway.deposits.config import DepositsConfig
from aigateway.deposits.rates import rate_in_force, rate_text, tmt_units, token_amount
from aigateway.deposits.tables import (
    deposit_addresses,
    deposit_cursors,
    deposit_history,
    deposit_leases,
    deposit_transactions,
    deposits,
)
from aigateway.deposits.tron import LogShapeError, address_from_hex, address_hex, parse_transfer
from aigateway.store.bulk import insert_ignoring_duplicates
from aigateway.store.leases import Lease, holder_id
from aigateway.store.metadata import utcnow
from aigateway.timeutil import now_ms, to_ms

log = logging.getLogger(__name__)

LEASE_NAME = "watcher"
EVENTS_CURSOR = "usdt_events"
_MAX_BIGINT = 2**63 - 1
_STALE_PENDING_MS = 3_600_000  # after an hour unsolidified, check less often
_FIRST_FOLLOW_MS = 3_600_000  # how far back the event follower starts on its very first run


def _without_credentials(url: str) -> str:
    """Hazard: an operator may put a key in the URL (https://user:key@host); never log it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if "@" in rest else url


def deposit_reference(tx_id: str, log_index: int) -> str:
    return f"deposit:{tx_id}:{log_index}"


def deposit_memo(amount_usdt: int, decimals: int, rate: str) -> str:
    return f"USDT deposit {token_amount(amount_usdt, decimals)} USDT @ {rate}"


class LeaseLost(Exception):
    pass


class RowError(Exception):
    """A problem with one transaction's data: that row backs off and is retried, the pass goes on."""


class NeedsReview(Exception):
    """The transaction cannot or must not be credited automatically: parked for the operator at once."""


@dataclass(slots=True)
class PassStats:
    events_pages: int = 0
    addresses: int = 0
    pages: int = 0
    seen: int = 0
    checked: int = 0
    credited: int = 0


class Watcher:
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
        self._next_follow = 0.0  # foreign-token transfers already logged (log once, not every poll)
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

    async def _discover_guarded(self, row, stats: PassStats) -> None:
        try:
            await self.discover(row, stats)
        except (ApiUnavailable, LeaseLost, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("deposits: discovery for %s failed; moving on to the next address", row.address)
            async with self.engine.begin() as conn:  # to the back of the queue
                await conn.execute(update(deposit_addresses).where(deposit_addresses.c.id == row.id)
                                   .values(last_polled_ms=now_ms()))

    async def verify_guarded(self, row, stats: PassStats | None = None) -> str:
        """`verify` with per-row errors caught: backed off, then parked as needs_review."""
        try:
            return await self.verify(row, stats)
        except (ApiUnavailable, LeaseLost, asyncio.CancelledError):
            raise
        except NeedsReview as exc:
            return await self.park(row, str(exc))
        except Exception as exc:
            return await self._row_failed(row, exc)

    async def _row_failed(self, row, exc: Exception) -> str:
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

    async def park(self, row, reason: str, *, failures: int | None = None) -> str:
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

    def _note_once(self, key: str, message: str, *args) -> None:
        if key in self._noted:
            log.debug(message, *args)
            return
        if len(self._noted) > 10_000:
            self._noted.clear()
        self._noted.add(key)
        log.info(message, *args)

    # -- discovery --------------------------------------------------------------------------

    # -- following the contract's events ------------------------------------------------------

    def add_address(self, address: str, address_id: int, customer_id: int) -> None:
        """An address allocated in this process: matched at once (other processes' by refresh)."""
        self._ours[address] = (address_id, customer_id)

    async def refresh_addresses(self) -> int:
        """Add addresses allocated since the last call to the in-memory set (new ids only)."""
        query = (select(deposit_addresses.c.id, deposit_addresses.c.address, deposit_addresses.c.customer_id)
                 .where(deposit_addresses.c.id > self._ours_max_id).order_by(deposit_addresses.c.id))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        for r in rows:
            self._ours[r.address] = (r.id, r.customer_id)
            self._ours_max_id = max(self._ours_max_id, r.id)
        return len(rows)

    async def follow_events(self, stats: PassStats | None = None) -> int:
        """Read confirmed USDT Transfer events since the cursor; record ours as pending. Returns how many."""
        stats = stats or PassStats()
        cfg = self.config
        await self.refresh_addresses()
        async with self.engine.connect() as conn:
            cursor = await conn.scalar(select(deposit_cursors.c.cursor_ms)
                                       .where(deposit_cursors.c.name == EVENTS_CURSOR))
        if cursor is None:
            # First run: from the oldest address's allocation (nothing can be paid to it before), but
            # at most an hour back; anything older is the per-address fallback's and `rescan`'s.
            async with self.engine.connect() as conn:
                oldest = await conn.scalar(select(func.min(deposit_addresses.c.cursor_ms)))
            cursor = max(oldest if oldest is not None else now_ms(), now_ms() - _FIRST_FOLLOW_MS)
            async with self.engine.begin() as conn:
                await conn.execute(insert_ignoring_duplicates(conn, deposit_cursors).values(
                    name=EVENTS_CURSOR, cursor_ms=cursor, updated_ms=now_ms()))
        since = max(0, cursor - int(cfg.events_overlap * 1000))
        fingerprint: str | None = None
        found = 0
        for _page_no in range(cfg.max_pages):
            page = await self.client.contract_events_page(self._contract, min_block_timestamp=since,
                                                          limit=cfg.page_limit, fingerprint=fingerprint)
            stats.events_pages += 1
            ours = [(self._ours[t.to], t) for t in page.transfers if t.to in self._ours]
            if ours:
                await self._record_events(ours)
                found += len(ours)
            if page.transfers:
                # confirmed blocks arrive in order: later confirmed events are never older than this
                reached = max(t.block_timestamp for t in page.transfers)
                if reached > cursor:
                    cursor = reached
                    async with self.engine.begin() as conn:  # progress survives a failure on a later page
                        await conn.execute(update(deposit_cursors).where(deposit_cursors.c.name == EVENTS_CURSOR)
                                           .where(deposit_cursors.c.cursor_ms < cursor)
                                           .values(cursor_ms=cursor, updated_ms=now_ms()))
            if not page.fingerprint or page.fingerprint == fingerprint:
                break
            fingerprint = page.fingerprint
        stats.seen += found
        return found

    async def _record_events(self, ours: list) -> None:
        rows = {}
        for (address_id, customer_id), t in ours:
            rows[(t.tx_id, address_id)] = {
                "tx_id": t.tx_id, "address_id": address_id, "customer_id": customer_id, "value": t.value[:80],
                "block_timestamp_ms": t.block_timestamp, "status": "pending", "checks": 0, "seen_at": utcnow(),
                "next_check_ms": 0}
        async with self.engine.begin() as conn:
            await conn.execute(insert_ignoring_duplicates(conn, deposit_transactions), list(rows.values()))

    # -- discovery per address --------------------------------------------------------------

    async def _due_addresses(self, now: int, fallback: bool = True) -> Sequence[Row[*tuple[Any, ...]]]:
        cfg = self.config
        if cfg.follow_events:
            # The events find every deposit; the per-address listing only serves open Deposit tabs
            # (pending at once) and, `fallback_batch` at a time, as a slow safety net.
            hot = (select(deposit_addresses).where(deposit_addresses.c.watch_until_ms > now)
                   .where(deposit_addresses.c.last_polled_ms <= now - int(cfg.hot_interval * 1000))
                   .order_by(deposit_addresses.c.last_polled_ms).limit(cfg.batch))
            cold = (select(deposit_addresses)
                    .where(deposit_addresses.c.last_polled_ms <= now - int(cfg.all_interval * 1000))
                    .order_by(deposit_addresses.c.last_polled_ms).limit(cfg.fallback_batch))
            async with self.engine.connect() as conn:
                rows = list((await conn.execute(hot)).all())
                ids = {r.id for r in rows}
                if fallback:  # once per events_interval: calls per minute stay independent of the address count
                    rows += [r for r in (await conn.execute(cold)).all() if r.id not in ids]
            return rows
        hot_due = and_(deposit_addresses.c.watch_until_ms > now,
                       deposit_addresses.c.last_polled_ms <= now - int(cfg.hot_interval * 1000))
        cold_due = deposit_addresses.c.last_polled_ms <= now - int(cfg.all_interval * 1000)
        query = (
            select(deposit_addresses)
            .where(or_(hot_due, cold_due))
            .order_by(case((deposit_addresses.c.watch_until_ms > now, 0), else_=1),
                      deposit_addresses.c.last_polled_ms)
            .limit(cfg.batch)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).all()

    async def discover(self, address_row, stats: PassStats | None = None) -> int:
        """Record incoming USDT transfers to one address as pending; returns how many were listed."""
        stats = stats or PassStats()
        cfg = self.config
        address = address_row.address
        since = max(0, address_row.cursor_ms - int(cfg.cursor_overlap * 1000))
        cursor = address_row.cursor_ms
        fingerprint: str | None = None
        listed = 0
        for _page in range(cfg.max_pages):
            page = await self.client.trc20_page(address, contract=self._contract, min_timestamp=since,
                                                limit=cfg.page_limit, fingerprint=fingerprint,
                                                only_confirmed=not cfg.discover_unconfirmed)
            stats.pages += 1
            ours = [t for t in page.transfers if self._is_ours(t, address)]
            listed += len(ours)
            if ours:
                await self._record_seen(address_row, ours)
            if page.transfers:
                cursor = max(cursor, max(t.block_timestamp for t in page.transfers))
                async with self.engine.begin() as conn:  # progress survives a failure on a later page
                    await conn.execute(update(deposit_addresses).where(deposit_addresses.c.id == address_row.id)
                                       .where(deposit_addresses.c.cursor_ms < cursor).values(cursor_ms=cursor))
            if not page.fingerprint or page.fingerprint == fingerprint:
                break
            fingerprint = page.fingerprint
        else:
            log.info("deposits: %s has more than %d pages of transfers; continuing next pass", address,
                     cfg.max_pages)
        async with self.engine.begin() as conn:
            await conn.execute(update(deposit_addresses).where(deposit_addresses.c.id == address_row.id)
                               .values(last_polled_ms=now_ms()))
        stats.addresses += 1
        stats.seen += listed
        return listed

    def _is_ours(self, t: SeenTransfer, address: str) -> bool:
        if t.to != address:
            log.debug("deposits: listing for %s shows a transfer to %s; ignored", address, t.to)
            return False
        if t.contract != self._contract:
            self._note_once(f"{t.tx_id}:{address}", "deposits: transfer %s to %s is of token contract %s, not the "
                            "configured USDT %s; ignored", t.tx_id, address, t.contract, self._contract)
            return False
        return True

    async def _record_seen(self, address_row, transfers: list[SeenTransfer]) -> None:
        rows = {t.tx_id: t for t in transfers}  # the same transaction twice on one page counts once
        async with self.engine.begin() as conn:
            await conn.execute(insert_ignoring_duplicates(conn, deposit_transactions), [
                {"tx_id": t.tx_id, "address_id": address_row.id, "customer_id": address_row.customer_id,
                 "value": t.value[:80], "block_timestamp_ms": t.block_timestamp, "status": "pending",
                 "checks": 0, "seen_at": utcnow(), "next_check_ms": 0}
                for t in rows.values()
            ])

    # -- verification and credit ------------------------------------------------------------

    async def _due_pending(self, now: int, address_id: int | None = None) -> Sequence[Row[*tuple[Any, ...]]]:
        query = (
            select(deposit_transactions, deposit_addresses.c.address)
            .join(deposit_addresses, deposit_addresses.c.id == deposit_transactions.c.address_id)
            .where(deposit_transactions.c.status == "pending")
            .where(deposit_transactions.c.next_check_ms <= now)
            .order_by(deposit_transactions.c.next_check_ms, deposit_transactions.c.id)
            .limit(self.config.batch)
        )
        if address_id is not None:
            query = query.where(deposit_transactions.c.address_id == address_id)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).all()

    async def verify(self, row, stats: PassStats | None = None) -> str:
        """Check one pending transaction against the solidified chain; returns its new status."""
        stats = stats or PassStats()
        stats.checked += 1
        info = await self.client.solid_transaction_info(row.tx_id)
        if info is None:
            return await self._still_pending(row)
        receipt = info.get("receipt")
        logs = info.get("log", [])
        if not isinstance(receipt, dict) or not isinstance(logs, list):
            raise RowError(f"transaction info for {row.tx_id} has an unexpected shape: {str(info)[:200]}")
        outcome = receipt.get("result")
        if info.get("result") == "FAILED" or outcome != "SUCCESS":
            why = []
            if info.get("result") == "FAILED":
                why.append("transaction result FAILED")
            if outcome != "SUCCESS":
                why.append(f"receipt result {outcome!r}")
            return await self._resolve(row, "rejected", f"transaction did not succeed on chain ({', '.join(why)})")
        our_hex = address_hex(row.address)
        transfers = []
        for index, entry in enumerate(logs):
            try:
                transfer = parse_transfer(index, entry)
            except LogShapeError as exc:
                contract = entry.get("address") if isinstance(entry, dict) else None
                if isinstance(contract, str) and contract.lower().removeprefix("0x")[-40:] == self._contract_hex:
                    # USDT's own logs are well-formed: this answer is damaged, so ask again later
                    raise RowError(f"tx {row.tx_id} log {index} of the USDT contract is malformed: {exc}") from exc
                log.warning("deposits: tx %s log %d: %s; ignored", row.tx_id, index, exc)
                continue
            if transfer is None or transfer.to_hex != our_hex:
                continue
            if transfer.contract_hex != self._contract_hex:
                self._note_once(f"{row.tx_id}:{index}", "deposits: tx %s log %d is a Transfer of contract %s to %s, "
                                "not USDT; ignored", row.tx_id, index, address_from_hex(transfer.contract_hex),
                                row.address)
                continue
            transfers.append(transfer)
        if not transfers:
            return await self._resolve(row, "rejected", "no Transfer of the configured USDT contract to this "
                                                        "address in the solidified transaction")
        return await self._credit(row, info, transfers, stats)

    async def _still_pending(self, row) -> str:
        now = now_ms()
        age = now - to_ms(row.seen_at)
        if age > int(self.config.pending_expiry * 1000):
            return await self._resolve(row, "expired", "never solidified; `admin deposits rescan` re-checks it")
        interval = self.config.pending_interval if age < _STALE_PENDING_MS else max(self.config.pending_interval, 60)
        async with self.engine.begin() as conn:
            await conn.execute(update(deposit_transactions).where(deposit_transactions.c.id == row.id)
                               .values(checks=deposit_transactions.c.checks + 1,
                                       next_check_ms=now + int(interval * 1000)))
        return "pending"

    async def _resolve(self, row, status: str, note: str) -> str:
        log.info("deposits: tx %s to %s %s: %s", row.tx_id, row.address, status, note)
        async with self.engine.begin() as conn:
            await conn.execute(update(deposit_transactions)
                               .where(deposit_transactions.c.id == row.id)
                               .where(deposit_transactions.c.status == "pending")
                               .values(status=status, note=note, resolved_at=utcnow(),
                                       checks=deposit_transactions.c.checks + 1))
        return status

    async def _approved(self, conn, tx_id: str) -> bool:
        return await conn.scalar(select(func.count()).select_from(deposit_history)
                                 .where(deposit_history.c.tx_id == tx_id)
                                 .where(deposit_history.c.action == "approve")) > 0

    def _check_amounts(self, row, transfers: list, rate) -> dict[int, int]:
        """TMT units per log, after checking every amount is in range BEFORE any database arithmetic."""
        cfg = self.config
        units_by_log = {}
        for t in transfers:
            if t.value > _MAX_BIGINT:
                raise NeedsReview(f"log {t.log_index}: value {t.value} base units is out of range; not credited")
            units = tmt_units(t.value, cfg.usdt_decimals, rate) if t.value >= cfg.min_deposit_units else 0
            if units > _MAX_BIGINT:
                raise NeedsReview(f"log {t.log_index}: {token_amount(t.value, cfg.usdt_decimals)} USDT would credit "
                                  f"{units} TMT units, out of range; not credited")
            units_by_log[t.log_index] = units
        return units_by_log

    async def _credit(self, row, info: dict, transfers: list, stats: PassStats) -> str:
        cfg = self.config
        ceiling = cfg.review_above_units
        block_number = info.get("blockNumber") if isinstance(info.get("blockNumber"), int) else None
        block_ts = info.get("blockTimeStamp") if isinstance(info.get("blockTimeStamp"), int) else None
        notes, any_credit = [], False
        async with self.engine.begin() as conn:
            # the rate in force now, read in the crediting transaction (recorded on the deposit)
            in_force = await rate_in_force(conn, cfg.rate, cfg.spread_decimal)
            rate = in_force.effective
            rate_s = rate_text(rate)
            units_by_log = self._check_amounts(row, transfers, rate)
            big = [t for t in transfers if ceiling is not None and t.value > ceiling]
            if big and not await self._approved(conn, row.tx_id):
                total = token_amount(sum(t.value for t in big), cfg.usdt_decimals)
                raise NeedsReview(f"{total} USDT is above the automatic credit ceiling of {cfg.review_above} USDT; "
                                  f"waiting for `admin deposits approve {row.tx_id}`")
            balance = await conn.scalar(select(customers.c.balance).where(customers.c.id == row.customer_id)) or 0
            if balance + sum(units_by_log.values()) > _MAX_BIGINT:
                raise NeedsReview(f"crediting {sum(units_by_log.values())} TMT units would put the balance out of "
                                  f"range; not credited")
            for t in transfers:
                units = units_by_log[t.log_index]
                credited = units > 0
                reference = deposit_reference(row.tx_id, t.log_index)
                inserted = (await conn.execute(
                    insert_ignoring_duplicates(conn, deposits).values(
                        tx_id=row.tx_id, log_index=t.log_index, customer_id=row.customer_id,
                        address_id=row.address_id, address=row.address, network=cfg.network,
                        contract=self._contract, from_address=address_from_hex(t.from_hex),
                        amount_usdt=t.value, decimals=cfg.usdt_decimals, rate=rate_s,
                        base_rate=rate_text(in_force.base),
                        spread=cfg.spread, amount_tmt=units, status="credited" if credited else "below_minimum",
                        ledger_reference=reference if credited else None, block_number=block_number,
                        block_timestamp_ms=block_ts, created_at=utcnow(),
                    ).returning(deposits.c.id)
                )).first()
                amount = token_amount(t.value, cfg.usdt_decimals)
                if not credited:
                    notes.append(f"log {t.log_index}: {amount} USDT is below the minimum deposit "
                                 f"{cfg.min_deposit} USDT; recorded, not credited")
                    continue
                any_credit = True
                if inserted is None:
                    notes.append(f"log {t.log_index}: already credited")
                    continue
                await post_entry(conn, customer_id=row.customer_id, amount=units, kind="deposit",
                                 reference=reference, memo=deposit_memo(t.value, cfg.usdt_decimals, rate_s))
                stats.credited += 1  # by this process: racing verifiers each report only their own
                notes.append(f"log {t.log_index}: {amount} USDT credited")
                log.info("deposits: credited customer %d %s USDT @ %s (tx %s log %d)", row.customer_id, amount,
                         rate_s, row.tx_id, t.log_index)
            status = "credited" if any_credit else "ignored"
            # Only a pending row: a racing verifier that resolved it first keeps its note.
            await conn.execute(update(deposit_transactions).where(deposit_transactions.c.id == row.id)
                               .where(deposit_transactions.c.status == "pending")
                               .values(status=status, note="; ".join(notes)[:2000], resolved_at=utcnow(),
                                       checks=deposit_transactions.c.checks + 1, failures=0))
        return status

    # -- operator helpers -------------------------------------------------------------------

    async def poll_address(self, address: str) -> PassStats:
        """Discover and verify one address now (used by `admin deposits rescan --now`)."""
        stats = PassStats()
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(deposit_addresses).where(deposit_addresses.c.address == address))).one()
        await self.discover(row, stats)
        for pending in await self._due_pending(_MAX_BIGINT, address_id=row.id):  # all of them, now
            await self.verify_guarded(pending, stats)
        return stats

