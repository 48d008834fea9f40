"""Item 2 of issue 13: login redirect targets (`next=`) are parsed, and only same-origin
paths without control characters or backslashes are followed; a bad one never leaves the
client with an empty reply after the session was created."""

from __future__ import annotations

import pytest

from aigateway.portal.base import safe_next
from tests.portal.conftest import PASSWORD, PortalClient

EVIL = ["/%09/evil.example", "/%0A/x", "/%0D%0ASet-Cookie:%20x=1", "//evil.example/", "/\\evil.example",
        "https://evil.example/", "/%5Cevil.example", "javascript:alert(1)",
        "/\t/evil.example", "/\n/x", "///evil.example", " /x"]


@pytest.mark.parametrize("target", EVIL)
def test_unsafe_targets_fall_back_to_the_dashboard(target):
    from urllib.parse import unquote

    assert safe_next(target) == "/dashboard"
    assert safe_next(unquote(target)) == "/dashboard"  # as aiohttp hands a decoded query value


@pytest.mark.parametrize("target,expected", [
    ("/transactions?page=2", "/transactions?page=2"),
    ("/transactions/2026-01-05", "/transactions/2026-01-05"),
    ("/docs#python", "/docs#python"),
    ("/keys?m=ü", "/keys?m=%C3%BC"),  # ASCII only in a header
])
def test_local_paths_are_kept(target, expected):
    assert safe_next(target) == expected


@pytest.mark.parametrize("raw", ["/%09/evil.example", "/%0A/x", "//evil", "/%5Cevil", "https://evil"])
def test_login_with_an_evil_next_in_the_url_lands_on_the_dashboard(visitor, raw):
    v = visitor()
    v.register("redir@example.com")
    # the login page takes next= from its URL (decoded by the server) into the form
    page = v.get(f"/login?next={raw}")
    assert page.status_code == 200 and 'name="next" value="/dashboard"' in page.text
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    from urllib.parse import unquote

    r = v.post("/login", {"csrf": token, "email": "redir@example.com", "password": PASSWORD,
                          "next": unquote(raw)})
    assert r.status_code == 303 and r.headers["Location"] == "/dashboard"
    assert v.cookie("gw_session")  # the session was created and the reply reached the client
    assert v.get("/dashboard").status_code == 200


def test_a_control_character_in_next_never_gives_an_empty_reply(visitor):
    v = visitor()
    v.register("crlf@example.com")
    for bad in ["/\n/x", "/\r\nSet-Cookie: a=b", "/\x00", "/a b\tc"]:
        c = PortalClient(v.server)
        r = c.form("/login", "/login", {"email": "crlf@example.com", "password": PASSWORD, "next": bad})
        assert r.status_code == 303 and r.headers["Location"] == "/dashboard", repr(bad)
        assert "a=b" not in str(r.headers)
