"""The log-in rule shared by the portal and the operator console: three limits per attempt.

An attempt counts against (email, client IP), the email from any IP, and the IP for any
email, all in one atomic step (service.attempt). A successful log-in ends the
(email, IP) streak and uncounts itself from the other two. Each caller passes its own
policies (the console's are stricter).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.throttle import service
from aigateway.throttle.service import Check, Policy, Verdict


def login_checks(email: str, ip: str, pair: Policy, account: Policy, by_ip: Policy) -> list[Check]:
    email = email.strip().lower()
    return [Check(pair, f"{email}|{ip}"), Check(account, email), Check(by_ip, ip)]


async def attempt(engine: AsyncEngine, checks: list[Check]) -> Verdict:
    """Count a log-in attempt before its password is checked; a refused attempt is not checked."""
    return await service.attempt(engine, checks)


async def succeeded(engine: AsyncEngine, checks: list[Check]) -> None:
    pair, account, by_ip = checks
    await service.forgive(engine, pair, clear=True)
    await service.forgive(engine, account)
    await service.forgive(engine, by_ip)


@dataclass(frozen=True, slots=True)
class LoginRule:
    """A caller's three policies (pair, account, IP) as `attempt` and `succeeded` by email and IP.

    The policies are read at each call, not when the rule is made, so a test can swap one."""

    policies: Callable[[], tuple[Policy, Policy, Policy]]

    async def attempt(self, engine: AsyncEngine, email: str, ip: str) -> Verdict:
        """Count a log-in attempt before its password is checked; a refused attempt is not checked."""
        return await attempt(engine, login_checks(email, ip, *self.policies()))

    async def succeeded(self, engine: AsyncEngine, email: str, ip: str) -> None:
        await succeeded(engine, login_checks(email, ip, *self.policies()))
