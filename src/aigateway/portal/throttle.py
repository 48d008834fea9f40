"""Slowing down password guessing: the login rule on the shared atomic throttle.

Three limits, each "the first N attempts of a streak are free, then every further
attempt waits 2, 4, 8, ... s (at most 5 min) after the previous one", a streak
forgotten after an hour without attempts:
  - per (email, client IP): N = 3   the usual case: one person mistyping, or one attacker;
  - per email, from any IP: N = 10  guesses spread over many addresses;
  - per client IP, any email: N = 20  one password tried against many emails.
An attempt is counted BEFORE the password is checked, in one atomic step with the
check (see aigateway.throttle.service), so simultaneous guesses cannot slip past.
A successful login ends the (email, IP) streak and uncounts itself from the other two.
"""

from __future__ import annotations

from aigateway.throttle import login, service
from aigateway.throttle.service import Policy

PAIR = Policy("login:pair", free=3, base=2.0, cap=300.0, forget=3600.0)
ACCOUNT = Policy("login:account", free=10, base=2.0, cap=300.0, forget=3600.0)
IP = Policy("login:ip", free=20, base=2.0, cap=300.0, forget=3600.0)

FREE_FAILURES = PAIR.free
MAX_DELAY = PAIR.cap


def delay_after(failures: int) -> float:
    """Seconds an attempt must wait after the last of `failures` consecutive failures (one email, one IP)."""
    return PAIR.delay_after(failures)


_RULE = login.LoginRule(lambda: (PAIR, ACCOUNT, IP))  # read at call time: tests may swap a policy
attempt = _RULE.attempt  # count a login attempt before its password is checked
succeeded = _RULE.succeeded


purge_stale = service.purge_stale
