"""Operator log-in throttling on the shared atomic limiter (aigateway.throttle): stricter
than the portal's, since one operator account can move everyone's money."""

from __future__ import annotations

from aigateway.throttle import login
from aigateway.throttle.service import Policy

PAIR = Policy("console:pair", free=3, base=2.0, cap=900.0, forget=3600.0)
ACCOUNT = Policy("console:account", free=6, base=2.0, cap=900.0, forget=3600.0)
IP = Policy("console:ip", free=10, base=2.0, cap=900.0, forget=3600.0)


_RULE = login.LoginRule(lambda: (PAIR, ACCOUNT, IP))  # read at call time: tests may swap a policy
attempt = _RULE.attempt  # count a login attempt before its password is checked
succeeded = _RULE.succeeded
