"""Login throttling holds against guesses sent at the same instant (issue 13, item 1).

The attempt is counted in the same atomic statement that checks the limit, so of 60
simultaneous logins only the allowed number reach the password check; on PostgreSQL
the guesses are spread over two replicas sharing the database.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from aigateway.portal import throttle
from tests.conftest import gateway_config
from tests.portal.conftest import PASSWORD, PortalClient, csrf_of

ATTACKER = {"X-Forwarded-For": "203.0.113.9"}


def _config(mock_upstream, db_url):
    return gateway_config(mock_upstream.url, db_url, portal={"trust_forwarded_for": True})


def _clients(servers, count: int) -> list[tuple[PortalClient, str]]:
    """Login pages opened ahead of a burst (client, CSRF token), so the burst itself is only POSTs."""
    clients = [PortalClient(servers[i % len(servers)], headers=ATTACKER) for i in range(count)]
    return [(c, csrf_of(c.get("/login").text)) for c in clients]


def _burst(clients: list[tuple[PortalClient, str]], email: str, passwords: list[str]) -> list[int]:
    """POST /login once per password, all released at the same moment; returns the statuses."""
    start = threading.Barrier(len(passwords))

    def one(i: int) -> int:
        client, token = clients[i]
        start.wait()
        return client.post("/login", {"csrf": token, "email": email, "password": passwords[i]}).status_code

    with ThreadPoolExecutor(len(passwords)) as pool:
        return list(pool.map(one, range(len(passwords))))


def test_sixty_simultaneous_guesses_get_at_most_one_password_check(db_url, start_gateway, mock_upstream):
    first = start_gateway(_config(mock_upstream, db_url))
    servers = [first]
    if db_url.startswith("postgresql"):
        servers.append(start_gateway(_config(mock_upstream, db_url)))  # a second replica, same database
    attacker = PortalClient(first, headers=ATTACKER)
    assert attacker.register("target@example.com").status_code == 303
    for _ in range(throttle.FREE_FAILURES):
        assert attacker.login("target@example.com", "wrong guess!").status_code == 401
    # Both bursts' login pages are opened now: on a loaded machine, opening 60 between the
    # bursts took longer than the wait the first burst imposes.
    first_burst, second_burst = _clients(servers, 60), _clients(servers, 60)
    time.sleep(throttle.delay_after(throttle.FREE_FAILURES) + 0.2)  # the wait the last failure imposed is over

    # 60 wrong guesses at once: one was due, the other 59 are refused without a password check
    statuses = _burst(first_burst, "target@example.com", [f"wrong guess {i}" for i in range(60)])
    first_done = time.monotonic()
    assert [s for s in statuses if s != 429] in ([401], []), statuses
    first_checked = statuses.count(401)

    # then at once 59 wrong and the right one (issue 13: this used to give 59 x 401 and a 303)
    passwords = [f"wrong guess {i}" for i in range(59)] + [PASSWORD]
    statuses = _burst(second_burst, "target@example.com", passwords)
    waited = time.monotonic() - first_done
    if first_checked and waited < throttle.delay_after(throttle.FREE_FAILURES + 1):
        assert statuses == [429] * 60, statuses  # within the 4 s wait the streak demands: nothing is checked

    checked = [s for s in statuses if s != 429]
    assert set(checked) <= {401, 303}
    if 303 in checked:
        # The right password took the one due attempt, and a success ends the streak: the sender
        # knows the password, so at most a fresh streak's free attempts follow it.
        assert len(checked) <= 1 + throttle.FREE_FAILURES, statuses
    else:
        assert len(checked) <= 1, statuses  # one attempt was due; every other one was refused unchecked
    assert statuses.count(429) >= 60 - 1 - throttle.FREE_FAILURES
    # the owner, from another address, is not locked out by the attacker's guesses
    owner = PortalClient(servers[-1], headers={"X-Forwarded-For": "198.51.100.8"})
    assert owner.login("target@example.com").status_code == 303


def test_one_password_against_many_emails_from_one_ip_is_limited(sqlite_url, start_gateway, mock_upstream,
                                                                 monkeypatch):
    # The per-IP rule with a smaller allowance (each check costs an argon2 hash; the rule is the same).
    small = dataclasses.replace(throttle.IP, free=5)
    monkeypatch.setattr(throttle, "IP", small)
    server = start_gateway(_config(mock_upstream, sqlite_url))
    sprayer = PortalClient(server, headers=ATTACKER)
    statuses = [sprayer.login(f"user{i}@example.com", "Summer2026!").status_code for i in range(small.free + 3)]
    assert statuses[:small.free] == [401] * small.free
    assert statuses[small.free:] == [429] * 3
    page = sprayer.login("someone-else@example.com", "Summer2026!")
    assert "Too many failed login attempts. Please wait" in page.text
    # another address is not affected
    assert PortalClient(server, headers={"X-Forwarded-For": "198.51.100.4"}).login(
        "user1@example.com", "Summer2026!").status_code == 401
