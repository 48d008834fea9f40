"""What the portal (`appkeys.DepositsPort`) and the CLI ask of deposits."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.service import get_customer
from aigateway.deposits.config import DepositsConfig
from aigateway.deposits.rates import RateError, parse_decimal, rate_in_force, rate_text, token_amount
from aigateway.deposits.tables import deposit_addresses, deposit_history, deposit_transactions, deposits
from aigateway.deposits.tron import derive_address, xpub_fingerprint
from aigateway.money import format_tmt
from aigateway.store.metadata import utcnow
from aigateway.timeutil import iso, now_ms

if TYPE_CHECKING:
    from aigateway.deposits.watcher import Watcher

log = logging.getLogger(__name__)

_ALLOCATE_ATTEMPTS = 20


def _usdt(value: str | int, decimals: int) -> str:
    try:
        return token_amount(int(value), decimals)
    except (TypeError, ValueError):
        return str(value)


# Seen transactions that were not credited, and why, as the customer reads it (internal
# errors stay in the operator's note: `admin deposits list --status ...`).
_NOT_CREDITED = {
    "needs_review": "held for a review by the operator",
    "rejected": "the transaction failed on chain or is not a USDT transfer to this address",
    "expired": "not confirmed on chain within the waiting time; the operator can check it again",
}


def _not_credited_reason(row) -> str:
    if row.status == "rejected" and row.note and row.note.startswith("rejected by the operator: "):
        return row.note
    return _NOT_CREDITED.get(row.status, row.status)


def _pending_progress(row) -> str:
    if row.failures:
        return "seen on chain; crediting is delayed and retried automatically"
    if row.checks:
        return "seen on chain; waiting for confirmation"
    return "seen on chain"


class DepositsService:
    """Implements `appkeys.DepositsPort`; `bind(engine)` before use."""

    def __init__(self, config: DepositsConfig, engine: AsyncEngine | None = None) -> None:
        self.config = config
        self._engine = engine
        self.watcher: Watcher | None = None  # the in-process watcher, when one runs (see web.py)
        self._xpub_fp = xpub_fingerprint(config.xpub)
        self._watch_written: dict[int, float] = {}
        self._tasks: set[asyncio.Task] = set()

    def bind(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("DepositsService used before bind(engine)")
        return self._engine

    # -- addresses --------------------------------------------------------------------------

    async def address_for(self, customer_id: int) -> str:
        """The customer's permanent deposit address, allocated at the next unused index."""
        for _attempt in range(_ALLOCATE_ATTEMPTS):
            try:
                async with self.engine.begin() as conn:
                    existing = await conn.scalar(select(deposit_addresses.c.address)
                                                 .where(deposit_addresses.c.customer_id == customer_id))
                    if existing is not None:
                        return existing
                    await get_customer(conn, customer_id)
                    last = await conn.scalar(select(func.max(deposit_addresses.c.derivation_index)))
                    index = 0 if last is None else last + 1
                    address = derive_address(self.config.xpub, index)
                    new_id = (await conn.execute(deposit_addresses.insert().values(
                        customer_id=customer_id, derivation_index=index, address=address,
                        xpub_fp=self._xpub_fp, network=self.config.network, cursor_ms=now_ms(),
                        last_polled_ms=0, watch_until_ms=0).returning(deposit_addresses.c.id))).scalar_one()
                log.info("deposits: customer %d gets address %s (index %d)", customer_id, address, index)
                if self.watcher is not None:  # the in-process follower matches it from the next event on
                    self.watcher.add_address(address, new_id, customer_id)
                return address
            except IntegrityError:
                # Another process took this customer or this index at the same moment: look again.
                await asyncio.sleep(0.01)
        raise RuntimeError(f"could not allocate a deposit address for customer {customer_id}")

    async def check_addresses(self) -> None:
        """Warn when addresses were derived from another xpub (the operator changed the key)."""
        async with self.engine.connect() as conn:
            others = await conn.scalar(select(func.count()).select_from(deposit_addresses)
                                       .where(deposit_addresses.c.xpub_fp != self._xpub_fp))
        if others:
            log.warning("deposits: %d deposit address(es) were derived from a different xpub than the configured "
                        "one. They stay assigned and watched (customers keep their address); new customers get "
                        "addresses of the configured xpub at fresh indexes.", others)

    # -- the portal -------------------------------------------------------------------------

    def watch_closely(self, customer_id: int) -> None:
        """Poll this customer's address every `hot_interval` for the next `hot_window` seconds."""
        now = time.monotonic()
        last = self._watch_written.get(customer_id)
        if last is not None and now - last < min(30.0, self.config.hot_window / 4):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._watch_written[customer_id] = now
        task = loop.create_task(self._mark_hot(customer_id, now_ms() + int(self.config.hot_window * 1000)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mark_hot(self, customer_id: int, until_ms: int) -> None:
        mark = (update(deposit_addresses).where(deposit_addresses.c.customer_id == customer_id)
                .values(watch_until_ms=until_ms))
        try:
            async with self.engine.begin() as conn:
                marked = (await conn.execute(mark)).rowcount
            if not marked:  # first visit: the tab may ask for the address only after this call
                await self.address_for(customer_id)
                async with self.engine.begin() as conn:
                    await conn.execute(mark)
        except Exception:
            self._watch_written.pop(customer_id, None)
            log.warning("deposits: could not mark customer %d's address for close watching", customer_id,
                        exc_info=True)

    async def overview(self, customer_id: int, limit: int = 20) -> dict:
        cfg = self.config
        address = await self.address_for(customer_id)
        async with self.engine.connect() as conn:
            pending = (await conn.execute(
                select(deposit_transactions).where(deposit_transactions.c.customer_id == customer_id)
                .where(deposit_transactions.c.status == "pending")
                .order_by(deposit_transactions.c.seen_at.desc()).limit(limit)
            )).all()
            done = (await conn.execute(
                select(deposits).where(deposits.c.customer_id == customer_id)
                .order_by(deposits.c.created_at.desc(), deposits.c.id.desc()).limit(limit)
            )).all()
            unresolved = (await conn.execute(
                select(deposit_transactions).where(deposit_transactions.c.customer_id == customer_id)
                .where(deposit_transactions.c.status.in_(tuple(_NOT_CREDITED)))
                .order_by(deposit_transactions.c.seen_at.desc()).limit(limit)
            )).all()
            try:
                rate = rate_text((await rate_in_force(conn, cfg.rate, cfg.spread_decimal)).effective)
            except RateError:
                rate = None  # no rate set yet: the tab shows none rather than a wrong one
        credited = [d for d in done if d.status == "credited"]
        ignored = [d for d in done if d.status != "credited"]
        return {
            "address": address,
            "network": cfg.network,
            "token": "USDT (TRC-20)",
            "contract": cfg.usdt_contract,
            "rate": rate,
            "min_deposit": token_amount(cfg.min_deposit_units, cfg.usdt_decimals),
            # Each row carries `progress`: what happened so far, in the customer's words.
            "pending": [{"tx_id": p.tx_id, "amount_usdt": _usdt(p.value, cfg.usdt_decimals),
                         "seen_at": iso(p.seen_at), "progress": _pending_progress(p)} for p in pending],
            "credited": [{"tx_id": d.tx_id, "amount_usdt": token_amount(d.amount_usdt, d.decimals),
                          "amount_tmt": format_tmt(d.amount_tmt), "rate": d.rate,
                          "credited_at": iso(d.created_at),
                          "progress": f"credited {format_tmt(d.amount_tmt)} TMT at {d.rate} TMT per USDT"}
                         for d in credited],
            # Recorded but not credited (below the minimum deposit).
            "ignored": [{"tx_id": d.tx_id, "amount_usdt": token_amount(d.amount_usdt, d.decimals),
                         "reason": "below the minimum deposit", "progress": "not credited: below the minimum deposit",
                         "seen_at": iso(d.created_at)} for d in ignored]
            + [{"tx_id": t.tx_id, "amount_usdt": _usdt(t.value, cfg.usdt_decimals),
                "reason": _not_credited_reason(t), "progress": f"not credited: {_not_credited_reason(t)}",
                "seen_at": iso(t.seen_at)} for t in unresolved],
        }

    # -- operator tools ---------------------------------------------------------------------

    async def rescan(self, address: str, since_ms: int) -> int:
        """Re-read an address's transfers from `since_ms` on the next pass; expired and rejected ones
        are checked again (harmless: a deposit is credited once whatever happens). Returns how many
        went back to pending."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(deposit_addresses.c.id)
                                      .where(deposit_addresses.c.address == address))).first()
            if row is None:
                raise LookupError(f"{address} is not one of our deposit addresses")
            # discovery reads from cursor - overlap; cursor = since reads a little more, never less
            await conn.execute(update(deposit_addresses).where(deposit_addresses.c.id == row.id)
                               .values(cursor_ms=max(0, since_ms), last_polled_ms=0,
                                       # polled on the next pass, also when discovery follows events
                                       watch_until_ms=now_ms() + int(self.config.hot_window * 1000)))
            result = await conn.execute(
                update(deposit_transactions).where(deposit_transactions.c.address_id == row.id)
                .where(deposit_transactions.c.status.in_(("expired", "rejected")))
                .values(status="pending", next_check_ms=0, seen_at=utcnow(),
                        note="re-checked by rescan", resolved_at=None))
        return result.rowcount

    # What each operator action may start from, and where it leads. Every action is written to
    # `deposit_history` (who, what, why) in the same transaction as the status change.
    _REVIEW = {
        "retry": (("needs_review", "rejected", "expired"), "pending"),
        "approve": (("needs_review", "pending"), "pending"),
        "reject": (("needs_review", "pending"), "rejected"),
    }

    async def review(self, tx_id: str, action: str, actor: str, reason: str | None = None) -> int:
        """retry | approve | reject a seen transaction; returns how many rows changed (LookupError if none)."""
        allowed, target = self._REVIEW[action]
        tx_id = tx_id.strip().lower()
        note = {"retry": "retry requested by the operator",
                "approve": "approved by the operator: credited on the next check",
                "reject": f"rejected by the operator: {reason}"}[action]
        values: dict = {"status": target, "note": note}
        if target == "pending":
            values.update(failures=0, next_check_ms=0, resolved_at=None, seen_at=utcnow())
        else:
            values.update(resolved_at=utcnow())
        async with self.engine.begin() as conn:
            current = (await conn.execute(select(deposit_transactions.c.status)
                                          .where(deposit_transactions.c.tx_id == tx_id))).scalars().all()
            if not current:
                raise LookupError(f"no transaction {tx_id} has been seen")
            changed = (await conn.execute(update(deposit_transactions).where(deposit_transactions.c.tx_id == tx_id)
                                          .where(deposit_transactions.c.status.in_(allowed))
                                          .values(**values))).rowcount
            if not changed:
                raise LookupError(f"transaction {tx_id} is {', '.join(sorted(set(current)))}: cannot {action} it "
                                  f"(only when {' or '.join(allowed)})")
            await conn.execute(deposit_history.insert().values(tx_id=tx_id, action=action, actor=actor[:120],
                                                               note=reason or note, created_at=utcnow()))
        log.info("deposits: %s %s tx %s%s", actor, action, tx_id, f" ({reason})" if reason else "")
        return changed

    async def history(self, tx_id: str) -> list:
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(deposit_history).where(deposit_history.c.tx_id == tx_id.lower())
                                            .order_by(deposit_history.c.id))).all())

    async def set_rate_override(self, rate: str | None, note: str) -> None:
        """Record an explicit deposit rate (None: back to the USD rate of `admin fx set`)."""
        from aigateway.deposits.tables import deposit_rate_overrides

        value = None if rate is None else rate_text(parse_decimal(rate, "rate"))
        if value is not None and parse_decimal(value, "rate") <= 0:
            raise RateError("a rate must be positive")
        async with self.engine.begin() as conn:
            await conn.execute(deposit_rate_overrides.insert().values(rate=value, note=note, created_at=utcnow()))

    async def rate_now(self):
        async with self.engine.connect() as conn:
            return await rate_in_force(conn, self.config.rate, self.config.spread_decimal)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
