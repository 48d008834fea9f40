"""Voucher batches and redemption.

Money invariants:
- A redemption is ONE transaction: a conditional UPDATE moves the voucher from
  `active` (batch not voided, not expired) to `redeemed`, and the ledger entry of
  kind `voucher` with the unique reference `voucher:<id>` credits the customer. Two
  replicas redeeming one code at once: PostgreSQL makes the second UPDATE wait for
  the first and then find the row no longer active, so it credits nothing; the
  unique reference is the second lock should anything else post it.
- Every redemption attempt is counted by the atomic throttle (per account and per
  IP) before the code is looked up; a malformed code (typo) is refused before
  that, as it reveals nothing. A refused code gets one message whatever the reason,
  so an attacker learns nothing about which codes exist.
- The report's redeemed sums come from the ledger itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, and_, case, cast, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aigateway.billing.ledger import move_balance
from aigateway.billing.tables import ledger_entries
from aigateway.store.bulk import insert_ignoring_duplicates
from aigateway.store.metadata import utcnow
from aigateway.throttle import service as throttle
from aigateway.throttle.service import Check, Policy
from aigateway.vouchers import codes
from aigateway.vouchers.tables import voucher_audit, voucher_batches, vouchers

KIND = "voucher"  # the ledger kind of a voucher credit
MAX_BATCH = 100_000

# Redemption limits: 5 tries per account (20 per IP) are free; then a lock of 1 min,
# doubling with each further failure up to 1 h; forgotten a day after the last try.
ACCOUNT = Policy("voucher:account", free=5, base=60.0, cap=3600.0, forget=86400.0)
IP = Policy("voucher:ip", free=20, base=60.0, cap=3600.0, forget=86400.0)
POLICIES = (ACCOUNT, IP)

REFUSED = ("This code cannot be redeemed. It may be mistyped, already used, voided or expired. "
           "Please check it, or ask the seller.")


class VoucherError(ValueError):
    """An operator command that cannot be carried out (unknown batch, bad amount, ...)."""


@dataclass(frozen=True, slots=True)
class Redeemed:
    voucher_id: int
    amount: int
    label: str
    balance: int | None  # after the credit (None when read back later)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str  # typo | invalid | wait
    message: str
    wait: float = 0.0


def reference(voucher_id: int) -> str:
    return f"{KIND}:{voucher_id}"


def memo(label: str) -> str:
    return f"Voucher ({label})"


async def audit(conn: AsyncConnection, actor: str, action: str, batch_id: int | None = None,
                detail: str | None = None) -> None:
    await conn.execute(insert(voucher_audit).values(at=utcnow(), actor=actor, action=action, batch_id=batch_id,
                                                    detail=detail))


# ------------------------------------------------------------------ operator

async def create_batch(conn: AsyncConnection, *, amount: int, count: int, label: str,
                       expires_at: datetime | None, actor: str) -> tuple[int, list[str]]:
    """A new batch; returns (batch id, the codes in clear). Only their hashes are stored."""
    if amount <= 0:
        raise VoucherError("the amount must be positive")
    if not 1 <= count <= MAX_BATCH:
        raise VoucherError(f"count must be between 1 and {MAX_BATCH}")
    if not label.strip():
        raise VoucherError("give the batch a label")
    batch_id = (await conn.execute(insert(voucher_batches).values(
        label=label.strip(), amount=amount, count=count, expires_at=expires_at, created_at=utcnow())
        .returning(voucher_batches.c.id))).scalar_one()
    issued: set[str] = set()
    while len(issued) < count:
        issued.add(codes.generate())
    clear = sorted(issued)
    rows = [{"batch_id": batch_id, "code_hash": codes.code_hash(codes.normalise(c)), "status": "active"}
            for c in clear]
    for start in range(0, len(rows), 1000):
        await conn.execute(insert(vouchers), rows[start:start + 1000])
    await audit(conn, actor, "create", batch_id,
                f"{count} x {amount} units, label {label.strip()!r}, expires {expires_at or 'never'}")
    return batch_id, clear


async def void_batch(conn: AsyncConnection, batch_id: int, actor: str) -> int:
    """Void a batch: its unredeemed vouchers can no longer be redeemed. Returns how many were voided."""
    now = utcnow()
    found = (await conn.execute(update(voucher_batches).where(voucher_batches.c.id == batch_id)
                                .values(voided_at=func.coalesce(voucher_batches.c.voided_at, now))
                                .returning(voucher_batches.c.id))).first()
    if found is None:
        raise VoucherError(f"no voucher batch {batch_id}")
    voided = (await conn.execute(update(vouchers).where(vouchers.c.batch_id == batch_id,
                                                        vouchers.c.status == "active")
                                 .values(status="void", voided_at=now))).rowcount
    await audit(conn, actor, "void-batch", batch_id, f"{voided} unredeemed voucher(s) voided")
    return voided


async def void_code(conn: AsyncConnection, code: str, actor: str) -> int:
    """Void one voucher by its code; returns its batch id."""
    try:
        canonical = codes.normalise(code)
    except codes.CodeError as exc:
        raise VoucherError(str(exc)) from exc
    row = (await conn.execute(select(vouchers.c.id, vouchers.c.batch_id, vouchers.c.status)
                              .where(vouchers.c.code_hash == codes.code_hash(canonical)))).first()
    if row is None:
        raise VoucherError("no voucher has this code")
    if row.status != "active":
        raise VoucherError(f"voucher {row.id} is already {row.status}")
    changed = (await conn.execute(update(vouchers).where(vouchers.c.id == row.id, vouchers.c.status == "active")
                                  .values(status="void", voided_at=utcnow()))).rowcount
    if changed != 1:
        raise VoucherError(f"voucher {row.id} was redeemed or voided just now")
    await audit(conn, actor, "void-code", row.batch_id, f"voucher {row.id} voided (code ...{canonical[-4:]})")
    return row.batch_id


@dataclass(frozen=True, slots=True)
class BatchReport:
    id: int
    label: str
    amount: int
    count: int
    created_at: datetime
    expires_at: datetime | None
    voided_at: datetime | None
    redeemed: int  # vouchers redeemed
    redeemed_sum: int  # units credited, from the ledger
    outstanding: int  # vouchers still redeemable
    liability: int  # units still redeemable (outstanding * amount)

    @property
    def face_value(self) -> int:
        return self.amount * self.count


async def batch_reports(conn: AsyncConnection) -> list[BatchReport]:
    now = utcnow()
    b, v, le = voucher_batches, vouchers, ledger_entries
    credited = (select(v.c.batch_id, func.count().label("n"), func.sum(le.c.amount).label("total"))
                .select_from(le.join(v, le.c.reference == literal(KIND + ":") + cast(v.c.id, String)))
                .where(le.c.kind == KIND).group_by(v.c.batch_id).subquery())
    live = and_(b.c.voided_at.is_(None), or_(b.c.expires_at.is_(None), b.c.expires_at > now))
    outstanding = (select(v.c.batch_id, func.count().label("n")).where(v.c.status == "active")
                   .group_by(v.c.batch_id).subquery())
    rows = (await conn.execute(
        select(b, func.coalesce(credited.c.n, 0).label("redeemed"),
               func.coalesce(credited.c.total, 0).label("redeemed_sum"),
               case((live, func.coalesce(outstanding.c.n, 0)), else_=0).label("outstanding"))
        .select_from(b.outerjoin(credited, credited.c.batch_id == b.c.id)
                     .outerjoin(outstanding, outstanding.c.batch_id == b.c.id))
        .order_by(b.c.id))).all()
    # r._mapping: the column `count` is shadowed by the tuple method for the type checker
    return [BatchReport(r.id, r.label, int(r.amount), r._mapping["count"], r.created_at, r.expires_at, r.voided_at,
                        int(r.redeemed), int(r.redeemed_sum), int(r.outstanding), int(r.outstanding) * int(r.amount))
            for r in rows]


async def ledger_total(conn: AsyncConnection) -> int:
    """Every voucher credit ever posted, straight from the ledger (the report must equal it)."""
    return int((await conn.execute(select(func.coalesce(func.sum(ledger_entries.c.amount), 0))
                                   .where(ledger_entries.c.kind == KIND))).scalar_one())


# ------------------------------------------------------------------ customer

def _checks(customer_id: int, ip: str) -> list[Check]:
    return [Check(ACCOUNT, str(customer_id), f"customer {customer_id}"), Check(IP, ip, f"ip {ip}")]


async def redeem(engine: AsyncEngine, customer_id: int, entered: str, ip: str) -> Redeemed | Refused:
    try:
        canonical = codes.normalise(entered)
    except codes.CodeError as exc:
        return Refused("typo", str(exc))
    verdict = await throttle.attempt(engine, _checks(customer_id, ip))
    if not verdict.allowed:
        return Refused("wait", wait_message(verdict.wait), verdict.wait)
    done = await _credit(engine, customer_id, codes.code_hash(canonical))
    if done is None:
        if verdict.wait:  # this failure starts (or extends) a lock: leave a trace for the operator
            async with engine.begin() as conn:
                await audit(conn, f"customer:{customer_id}", "lock",
                            detail=f"redemption locked for {int(verdict.wait)} s after repeated failures (ip {ip})")
        return Refused("invalid", REFUSED)
    for check in _checks(customer_id, ip):
        await throttle.forgive(engine, check)  # a success does not count towards a lock
    return done


def wait_message(wait: float) -> str:
    minutes, seconds = divmod(int(wait + 0.999), 60)
    span = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    return f"Too many voucher attempts. Please wait {span} and try again."


async def _credit(engine: AsyncEngine, customer_id: int, hashed: str) -> Redeemed | None:
    now = utcnow()
    b = voucher_batches
    live = select(b.c.id).where(b.c.voided_at.is_(None), or_(b.c.expires_at.is_(None), b.c.expires_at > now))
    async with engine.begin() as conn:
        row = (await conn.execute(
            update(vouchers)
            .where(vouchers.c.code_hash == hashed, vouchers.c.status == "active", vouchers.c.batch_id.in_(live))
            .values(status="redeemed", redeemed_by=customer_id, redeemed_at=now)
            .returning(vouchers.c.id, vouchers.c.batch_id))).first()
        if row is None:
            return None
        batch = (await conn.execute(select(b.c.amount, b.c.label).where(b.c.id == row.batch_id))).one()
        # post_entry knows only the billing kinds; the same two steps, with our own kind:
        posted = (await conn.execute(insert_ignoring_duplicates(conn, ledger_entries).values(
            customer_id=customer_id, amount=batch.amount, kind=KIND, reference=reference(row.id),
            memo=memo(batch.label), created_at=now).returning(ledger_entries.c.id))).first()
        if posted is None:  # hazard: only a bug could post this reference twice; credit nothing
            raise RuntimeError(f"voucher {row.id} was already credited")
        balance = await move_balance(conn, customer_id, int(batch.amount))
        if balance is None:
            raise RuntimeError(f"no customer {customer_id}")
    return Redeemed(row.id, int(batch.amount), batch.label, int(balance.balance))


async def redeemed_by(engine: AsyncEngine, customer_id: int, voucher_id: int) -> Redeemed | None:
    """A voucher this customer redeemed (for the result page after the redirect)."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(voucher_batches.c.amount, voucher_batches.c.label)
            .select_from(vouchers.join(voucher_batches, voucher_batches.c.id == vouchers.c.batch_id))
            .where(vouchers.c.id == voucher_id, vouchers.c.redeemed_by == customer_id))).first()
    return None if row is None else Redeemed(voucher_id, int(row.amount), row.label, None)
