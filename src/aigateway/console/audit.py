"""The audit trail: who did what, when, and the state before and after.

Invariant: append-only. This module is the only writer and it only INSERTs; an audit
row is written in the SAME transaction as the change it describes, so a change is
never without its row and a row never describes a change that was rolled back.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.console.tables import audit_log
from aigateway.store.metadata import utcnow


def _json(value) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


async def record(conn: AsyncConnection, *, actor: str, action: str, target: str | None = None,
                 before=None, after=None, reason: str | None = None) -> None:
    await conn.execute(audit_log.insert().values(at=utcnow(), actor=actor, action=action, target=target,
                                                 before=_json(before), after=_json(after), reason=reason))


async def entries(conn: AsyncConnection, *, limit: int = 200, action: str | None = None,
                  since: datetime | None = None) -> Sequence[Row[*tuple[Any, ...]]]:
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if action:
        query = query.where(audit_log.c.action == action)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    return (await conn.execute(query)).all()


def to_csv(rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "at", "actor", "action", "target", "before", "after", "reason"])
    for r in rows:
        # A leading = + - @ would be a formula in a spreadsheet: prefixed with a quote.
        writer.writerow([_cell(v) for v in (r.id, r.at.isoformat() if r.at else "", r.actor, r.action,
                                            r.target, r.before, r.after, r.reason)])
    return out.getvalue()


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
