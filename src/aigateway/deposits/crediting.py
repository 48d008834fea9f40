"""Verification and credit: a pending transaction is checked against the solidified chain and
credited exactly once.

For each pending transaction that is due, the solidity node's TransactionInfo is read. `{}` =
not solidified yet: check again later (less often after an hour; `expired` after
`pending_expiry`). Otherwise each log that is a Transfer of the configured USDT contract to
this address is credited, but only if the receipt says SUCCESS; anything else is rejected and
recorded with the reason.

Crediting: the `deposits` row (unique tx_id + log_index) and the ledger entry (unique reference
'deposit:<tx_id>:<log_index>') are written in ONE transaction, so a crash, a restart or a second
watcher racing this one can never credit twice, and a crash before the commit just leaves the
transaction pending for the next pass. Amounts are range-checked before any database
arithmetic; an amount out of range or above the approval ceiling raises `NeedsReview`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.accounts.tables import customers
from aigateway.billing.ledger import post_entry
from aigateway.deposits.rates import rate_in_force, rate_text, tmt_units, token_amount
from aigateway.deposits.tables import deposit_addresses, deposit_history, deposit_transactions, deposits
from aigateway.deposits.tron import LogShapeError, Transfer, address_from_hex, address_hex, parse_transfer
from aigateway.deposits.watch_state import PassStats, WatcherState, log
from aigateway.store.bulk import insert_ignoring_duplicates
from aigateway.store.metadata import utcnow
from aigateway.timeutil import now_ms, to_ms

MAX_BIGINT = 2**63 - 1
_STALE_PENDING_MS = 3_600_000  # after an hour unsolidified, check less often


def deposit_reference(tx_id: str, log_index: int) -> str:
    return f"deposit:{tx_id}:{log_index}"


def deposit_memo(amount_usdt: int, decimals: int, rate: str) -> str:
    return f"USDT deposit {token_amount(amount_usdt, decimals)} USDT @ {rate}"


class RowError(Exception):
    """A problem with one transaction's data: that row backs off and is retried, the pass goes on."""


class NeedsReview(Exception):
    """The transaction cannot or must not be credited automatically: parked for the operator at once."""


class Crediting(WatcherState):
    """The watcher's verification and credit part (mixed into `Watcher`)."""

    async def _due_pending(self, now: int, address_id: int | None = None) -> list[Row[Any]]:
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
            return list((await conn.execute(query)).all())

    async def verify(self, row: Row[Any], stats: PassStats | None = None) -> str:
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
        transfers: list[Transfer] = []
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

    async def _still_pending(self, row: Row[Any]) -> str:
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

    async def _resolve(self, row: Row[Any], status: str, note: str) -> str:
        log.info("deposits: tx %s to %s %s: %s", row.tx_id, row.address, status, note)
        async with self.engine.begin() as conn:
            await conn.execute(update(deposit_transactions)
                               .where(deposit_transactions.c.id == row.id)
                               .where(deposit_transactions.c.status == "pending")
                               .values(status=status, note=note, resolved_at=utcnow(),
                                       checks=deposit_transactions.c.checks + 1))
        return status

    async def _approved(self, conn: AsyncConnection, tx_id: str) -> bool:
        approvals = await conn.scalar(select(func.count()).select_from(deposit_history)
                                      .where(deposit_history.c.tx_id == tx_id)
                                      .where(deposit_history.c.action == "approve"))
        return bool(approvals)

    def _check_amounts(self, row: Row[Any], transfers: list[Transfer], rate: Decimal) -> dict[int, int]:
        """TMT units per log, after checking every amount is in range BEFORE any database arithmetic."""
        cfg = self.config
        units_by_log = {}
        for t in transfers:
            if t.value > MAX_BIGINT:
                raise NeedsReview(f"log {t.log_index}: value {t.value} base units is out of range; not credited")
            units = tmt_units(t.value, cfg.usdt_decimals, rate) if t.value >= cfg.min_deposit_units else 0
            if units > MAX_BIGINT:
                raise NeedsReview(f"log {t.log_index}: {token_amount(t.value, cfg.usdt_decimals)} USDT would credit "
                                  f"{units} TMT units, out of range; not credited")
            units_by_log[t.log_index] = units
        return units_by_log

    async def _credit(self, row: Row[Any], info: dict[str, Any], transfers: list[Transfer], stats: PassStats) -> str:
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
            if balance + sum(units_by_log.values()) > MAX_BIGINT:
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
