"""Item 3 of issue 13: key creation follows post/redirect/get. The secret is shown once,
from the session's sealed flash; reloading the page creates no other key and no longer
shows the secret."""

from __future__ import annotations

import re

from aigateway.portal.flash import seal, unseal
from tests.portal.conftest import csrf_of

SECRET = re.compile(r'value="(gw_[A-Za-z0-9_-]+)"')


def test_reload_after_creating_a_key_creates_no_second_key(visitor, gateway):
    v = visitor()
    cid = v.signup("prg@example.com")
    r = v.post("/keys", {"csrf": csrf_of(v.get("/keys").text), "name": "backend"})
    assert r.status_code == 303 and r.headers["Location"] == "/keys"
    assert not SECRET.search(r.text)  # the POST's own answer carries no secret
    shown = v.get("/keys")
    match = SECRET.search(shown.text)
    assert shown.status_code == 200 and match and "Key created!" in shown.text
    # the secret works, and what the database keeps is not it
    assert gateway.sql("SELECT count(*) FROM portal_flash")[0][0] == 0
    reloaded = v.get("/keys")  # what a browser's reload does after a redirect: GET again
    assert not SECRET.search(reloaded.text) and "Key created!" not in reloaded.text
    assert gateway.sql("SELECT count(*) FROM api_keys WHERE customer_id = :c", c=cid)[0][0] == 1
    assert "backend" in reloaded.text


def test_the_flash_is_sealed_to_the_session_cookie(visitor, gateway):
    v = visitor()
    v.signup("seal@example.com")
    other = visitor()
    other.signup("seal2@example.com")
    v.post("/keys", {"csrf": csrf_of(v.get("/keys").text), "name": "k"})
    stored = gateway.sql("SELECT payload FROM portal_flash")
    assert len(stored) == 1 and b"gw_" not in bytes(stored[0][0])
    assert not SECRET.search(other.get("/keys").text)  # another session sees nothing
    assert SECRET.search(v.get("/keys").text)
    # a wrong cookie or a tampered payload opens nothing
    sealed = seal("cookie-a", {"x": 1})
    assert unseal("cookie-a", sealed) == {"x": 1}
    assert unseal("cookie-b", sealed) is None
    assert unseal("cookie-a", sealed[:-1] + bytes([sealed[-1] ^ 1])) is None


def test_logout_drops_an_unshown_flash(visitor, gateway):
    v = visitor()
    v.signup("drop@example.com")
    v.post("/keys", {"csrf": csrf_of(v.get("/keys").text), "name": "k"})
    assert gateway.sql("SELECT count(*) FROM portal_flash")[0][0] == 1
    v.post("/logout", {"csrf": csrf_of(v.get("/dashboard").text)})
    assert gateway.sql("SELECT count(*) FROM portal_flash")[0][0] == 0
