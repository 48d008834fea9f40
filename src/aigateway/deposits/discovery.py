"""Discovery: finding incoming USDT transfers to our addresses and recording them as pending.

Two ways, both idempotent (a transaction already recorded is left as it is, so overlaps,
duplicates across pages and re-polls add nothing):

- following: every `events_interval`, read the USDT contract's confirmed Transfer events
  since a persisted cursor (minus a small overlap), in block order, page by page, and
  record those whose recipient is in the in-memory set of our addresses. The set is topped
  up from `deposit_addresses` (new ids only) before each read, so the cost of a pass
  depends on the chain's USDT traffic, never on the number of customers.
- per address: for each address that is due (Deposit tab opened recently: every
  `hot_interval`; otherwise every `all_interval`, or a `fallback_batch` at a time while
  following), list incoming transfers since the address's cursor (minus an overlap).

A cursor only moves after the page it covers is recorded, so a crash never skips a transfer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, and_, case, func, or_, select, update

from aigateway.deposits.client import SeenTransfer
from aigateway.deposits.tables import deposit_addresses, deposit_cursors, deposit_transactions
from aigateway.deposits.watch_state import PassStats, WatcherState, log
from aigateway.store.bulk import insert_ignoring_duplicates
from aigateway.store.metadata import utcnow
from aigateway.timeutil import now_ms

EVENTS_CURSOR = "usdt_events"
_FIRST_FOLLOW_MS = 3_600_000  # how far back the event follower starts on its very first run


class Discovery(WatcherState):
    """The watcher's discovery part (mixed into `Watcher`)."""

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

    async def _record_events(self, ours: list[tuple[tuple[int, int], SeenTransfer]]) -> None:
        # the same transaction twice (or across pages) counts once per address
        rows = {(t.tx_id, address_id): (t, address_id, customer_id) for (address_id, customer_id), t in ours}
        await self._record_pending(list(rows.values()))

    async def _record_pending(self, seen: list[tuple[SeenTransfer, int, int]]) -> None:
        """Insert (transfer, address id, customer id) as pending rows; rows already there stay as they are."""
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(insert_ignoring_duplicates(conn, deposit_transactions), [
                {"tx_id": t.tx_id, "address_id": address_id, "customer_id": customer_id, "value": t.value[:80],
                 "block_timestamp_ms": t.block_timestamp, "status": "pending", "checks": 0, "seen_at": now,
                 "next_check_ms": 0}
                for t, address_id, customer_id in seen
            ])

    # -- discovery per address --------------------------------------------------------------

    async def _due_addresses(self, now: int, fallback: bool = True) -> list[Row[Any]]:
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
        is_hot = and_(deposit_addresses.c.watch_until_ms > now,
                      deposit_addresses.c.last_polled_ms <= now - int(cfg.hot_interval * 1000))
        is_cold = deposit_addresses.c.last_polled_ms <= now - int(cfg.all_interval * 1000)
        query = (
            select(deposit_addresses)
            .where(or_(is_hot, is_cold))
            .order_by(case((deposit_addresses.c.watch_until_ms > now, 0), else_=1),
                      deposit_addresses.c.last_polled_ms)
            .limit(cfg.batch)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def discover(self, address_row: Row[Any], stats: PassStats | None = None) -> int:
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

    async def _record_seen(self, address_row: Row[Any], transfers: list[SeenTransfer]) -> None:
        rows = {t.tx_id: t for t in transfers}  # the same transaction twice on one page counts once
        await self._record_pending([(t, address_row.id, address_row.customer_id) for t in rows.values()])
