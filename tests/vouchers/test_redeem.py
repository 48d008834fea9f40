"""Redeeming in the portal over HTTP: credit once, history, one refusal message, throttling."""

from __future__ import annotations

import html
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from aigateway.money import to_units
from aigateway.vouchers import codes
from aigateway.vouchers.service import ACCOUNT, REFUSED, void_batch, void_code
from tests.portal.conftest import csrf_of
from tests.vouchers.conftest import balance_units, make_batch, redeem, voucher_ledger


def _page(client, query: dict) -> str:
    flat = "&".join(f"{k}={v[0]}" for k, v in query.items())
    return html.unescape(client.get(f"/deposit/voucher?{flat}").text)


def test_a_code_credits_once_and_shows_in_the_history(gateway, visitor):
    alice, bob = visitor(), visitor()
    alice_id, bob_id = alice.signup("alice@example.com"), bob.signup("bob@example.com")
    assert "Redeem a voucher" in alice.get("/deposit").text
    _, issued = make_batch(gateway, "50", 3, "Cash counter Ashgabat")

    done = redeem(alice, issued[0].lower().replace("-", " "))  # case and separators do not matter
    assert "r" in done
    assert balance_units(gateway, alice_id) == to_units("50")
    page = _page(alice, done)
    assert "+50.00 TMT" in page and "Cash counter Ashgabat" in page
    assert "Voucher (Cash counter Ashgabat)" in html.unescape(alice.get("/transactions").text)
    # the result page does not show another customer's credit
    assert "credited" not in _page(bob, done)

    # used: refused for the same customer and for another, with the one message
    assert redeem(alice, issued[0]) == {"e": ["invalid"]}
    assert redeem(bob, issued[0]) == {"e": ["invalid"]}
    assert REFUSED in _page(bob, {"e": ["invalid"]})
    assert balance_units(gateway, bob_id) == 0
    entries = voucher_ledger(gateway)
    assert len(entries) == 1 and entries[0][0] == alice_id and entries[0][2].startswith("voucher:")
    assert balance_units(gateway, alice_id) == gateway.ledger_sum(alice_id)

    # a second code of the batch works for bob
    assert "r" in redeem(bob, issued[1])
    assert balance_units(gateway, bob_id) == to_units("50") == gateway.ledger_sum(bob_id)


def test_the_form_needs_the_csrf_token(gateway, visitor):
    v = visitor()
    cid = v.signup("csrf@example.com")
    _, issued = make_batch(gateway, "5", 1, "csrf")
    assert v.post("/deposit/voucher", {"code": issued[0]}).status_code == 403
    assert v.post("/deposit/voucher", {"code": issued[0], "csrf": "forged"}).status_code == 403
    assert balance_units(gateway, cid) == 0


def test_a_typo_is_refused_before_any_lookup(gateway, visitor):
    v = visitor()
    v.signup("typo@example.com")
    _, issued = make_batch(gateway, "5", 1, "typo")
    canonical = codes.normalise(issued[0])
    wrong = canonical[:7] + ("A" if canonical[7] != "A" else "B") + canonical[8:]
    assert redeem(v, wrong) == {"e": ["typo"]}
    assert "typo" in _page(v, {"e": ["typo"]})
    # a typo reveals nothing, so it is not counted against the customer
    assert gateway.sql("SELECT count(*) FROM throttle_counters WHERE scope LIKE 'voucher:%'")[0][0] == 0
    assert "r" in redeem(v, issued[0])


def test_voided_expired_used_and_unknown_codes_get_one_message(gateway, visitor):
    v = visitor()
    cid = v.signup("refused@example.com")
    voided_batch, voided_codes = make_batch(gateway, "10", 2, "voided batch")
    _, singles = make_batch(gateway, "10", 2, "single void")
    _, expiring = make_batch(gateway, "10", 1, "expiring", datetime.now(UTC) + timedelta(days=1))

    async def void():
        async with gateway.engine.begin() as conn:
            await void_batch(conn, voided_batch, "test-operator")
            await void_code(conn, singles[0], "test-operator")

    gateway.run(void())
    # the batch's expiry passes
    gateway.run(_expire(gateway))
    assert "r" in redeem(v, singles[1])
    unknown = codes.generate()
    answers = [redeem(v, code) for code in (voided_codes[0], singles[0], expiring[0], singles[1], unknown)]
    assert answers == [{"e": ["invalid"]}] * 5
    assert balance_units(gateway, cid) == to_units("10") == gateway.ledger_sum(cid)


async def _expire(gateway) -> None:
    from sqlalchemy import update

    from aigateway.vouchers.tables import voucher_batches

    async with gateway.engine.begin() as conn:
        await conn.execute(update(voucher_batches).where(voucher_batches.c.label == "expiring")
                           .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_a_thousand_guessed_codes_are_throttled_and_credit_nothing(gateway, visitor):
    v = visitor()
    cid = v.signup("guesser@example.com")
    _, real = make_batch(gateway, "100", 50, "the real ones")
    token = csrf_of(v.get("/deposit").text)
    rng = random.Random(7)
    guesses = []
    for _ in range(1000):  # well-formed codes with a valid check character: the hardest kind to refuse
        payload = "".join(rng.choice(codes.ALPHABET) for _ in range(codes.RANDOM_CHARS))
        guesses.append(payload + codes.check_char(payload))

    def one(code: str) -> str:
        r = v.post("/deposit/voucher", {"csrf": token, "code": code})
        return r.headers["Location"]

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, guesses))
    looked_up = [o for o in outcomes if o.endswith("e=invalid")]
    throttled = [o for o in outcomes if "e=wait" in o]
    assert len(looked_up) <= ACCOUNT.free and len(looked_up) + len(throttled) == 1000
    assert balance_units(gateway, cid) == 0 and voucher_ledger(gateway) == []
    assert "Too many voucher attempts. Please wait" in _page(v, {"e": ["wait"], "s": ["60"]})
    # the lock is visible to the operator, and recorded
    locked = gateway.sql("SELECT label, hits FROM throttle_counters WHERE scope = 'voucher:account'")
    assert locked == [(f"customer {cid}", ACCOUNT.free)]
    assert gateway.sql("SELECT count(*) FROM voucher_audit WHERE action = 'lock'")[0][0] >= 1
    # even a real code is refused while the lock lasts
    assert redeem(v, real[0])["e"] == ["wait"]
    assert gateway.sql("SELECT count(*) FROM vouchers WHERE status = 'active'")[0][0] == 50


def test_successful_redemptions_never_lock_a_customer(gateway):
    from tests.vouchers.conftest import logged_in

    client, cid = logged_in(gateway, "reseller@example.com")
    _, issued = make_batch(gateway, "2.5", ACCOUNT.free + 3, "many")
    for code in issued:
        assert "r" in redeem(client, code)
    assert balance_units(gateway, cid) == to_units("2.5") * len(issued) == gateway.ledger_sum(cid)
