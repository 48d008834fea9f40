"""Operator log-in throttling on the shared atomic limiter (aigateway.throttle): stricter
than the portal's, since one operator account can move everyone's money."""

from __future__ import annotations

from aigateway.throttle import service
from aigateway.throttle.service import Check, Policy, Verdict

PAIR = Policy("console:pair", free=3, base=2.0, cap=900.0, forget=3600.0)
ACCOUNT = Policy("console:account", free=6, base=2.0, cap=900.0, forget=3600.0)
IP = Policy("console:ip", free=10, base=2.0, cap=900.0, forget=3600.0)


def _checks(email: str, ip: str) -> list[Check]:
    email = email.strip().lower()
    return [Check(PAIR, f"{email}|{ip}"), Check(ACCOUNT, email), Check(IP, ip)]


async def attempt(engine, email: str, ip: str) -> Verdict:
    return await service.attempt(engine, _checks(email, ip))


async def succeeded(engine, email: str, ip: str) -> None:
    pair, account, by_ip = _checks(email, ip)
    await service.forgive(engine, pair, clear=True)
    await service.forgive(engine, account)
    await service.forgive(engine, by_ip)
