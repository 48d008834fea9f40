"""Operator log-in throttling on the shared atomic limiter (aigateway.throttle): stricter
than the portal's, since one operator account can move everyone's money."""

from __future__ import annotations

from aigateway.throttle import login
from aigateway.throttle.login import login_checks
from aigateway.throttle.service import Check, Policy, Verdict

PAIR = Policy("console:pair", free=3, base=2.0, cap=900.0, forget=3600.0)
ACCOUNT = Policy("console:account", free=6, base=2.0, cap=900.0, forget=3600.0)
IP = Policy("console:ip", free=10, base=2.0, cap=900.0, forget=3600.0)


def _checks(email: str, ip: str) -> list[Check]:
    return login_checks(email, ip, PAIR, ACCOUNT, IP)  # read at call time: tests may swap a policy


async def attempt(engine, email: str, ip: str) -> Verdict:
    """Count a login attempt before its password is checked; refused attempts are not checked."""
    return await login.attempt(engine, _checks(email, ip))


async def succeeded(engine, email: str, ip: str) -> None:
    await login.succeeded(engine, _checks(email, ip))
