"""`aigateway admin portal set-password | logout`: the operator resets portal access."""

from __future__ import annotations

from click.testing import CliRunner

from aigateway.cli import main
from tests.portal.conftest import PASSWORD, PortalClient


def cli(tmp_path, db_url: str, *args: str, input: str | None = None):
    config = tmp_path / "cli.toml"
    config.write_text(f'discover_ollama = false\n[database]\nurl = "{db_url}"\n')
    return CliRunner().invoke(main, ["--config", str(config), "admin", "portal", *args], input=input)


def test_operator_sets_and_resets_a_password(gateway, sqlite_url, tmp_path, monkeypatch):
    monkeypatch.delenv("AIGATEWAY_DATABASE_URL", raising=False)
    cid, _ = gateway.customer("cli-made@example.com")  # created on the command line: no password
    v = PortalClient(gateway)
    assert v.login("cli-made@example.com").status_code == 401

    weak = cli(tmp_path, sqlite_url, "set-password", "--customer", "cli-made@example.com", "--password", "short")
    assert weak.exit_code != 0 and "Password is too weak" in weak.output
    ok = cli(tmp_path, sqlite_url, "set-password", "--customer", str(cid), input=f"{PASSWORD}\n{PASSWORD}\n")
    assert ok.exit_code == 0, ok.output
    assert f"password set for customer {cid}" in ok.output
    assert v.login("cli-made@example.com").headers["Location"] == "/dashboard"
    assert v.get("/keys").status_code == 200

    out = cli(tmp_path, sqlite_url, "logout", "--customer", "cli-made@example.com")
    assert out.exit_code == 0 and "1 session(s)" in out.output
    assert v.get("/keys").status_code == 303  # logged out everywhere

    missing = cli(tmp_path, sqlite_url, "logout", "--customer", "nobody@example.com")
    assert missing.exit_code != 0 and "no customer" in missing.output


def test_operator_resets_two_factor_with_a_reason_in_the_audit_log(gateway, sqlite_url, tmp_path, monkeypatch):
    import json

    from tests.portal.test_totp import enrol

    monkeypatch.delenv("AIGATEWAY_DATABASE_URL", raising=False)
    v = PortalClient(gateway)
    cid = v.signup("lost-phone@example.com")
    enrol(v)
    assert v.get("/keys").status_code == 200
    other = PortalClient(gateway)
    assert other.login("lost-phone@example.com").headers["Location"] == "/login/code"  # the second step

    no_reason = cli(tmp_path, sqlite_url, "reset-2fa", "--customer", str(cid))
    assert no_reason.exit_code != 0 and "--reason" in no_reason.output
    blank = cli(tmp_path, sqlite_url, "reset-2fa", "--customer", str(cid), "--reason", "   ")
    assert blank.exit_code != 0 and "--reason" in blank.output
    assert gateway.sql("SELECT count(*) FROM portal_totp WHERE customer_id = :c", c=cid)[0][0] == 1

    reason = "lost phone and codes; identity checked by a video call, ticket 4521"
    ok = cli(tmp_path, sqlite_url, "reset-2fa", "--customer", "lost-phone@example.com", "--reason", reason)
    assert ok.exit_code == 0, ok.output
    assert f"two-factor authentication turned off for customer {cid}" in ok.output and "1 session(s)" in ok.output
    for table in ("portal_totp", "portal_recovery_codes", "portal_pending_logins", "portal_sessions"):
        assert gateway.sql(f"SELECT count(*) FROM {table} WHERE customer_id = :c", c=cid)[0][0] == 0, table
    [row] = gateway.sql("SELECT actor, action, target, before, after, reason FROM console_audit_log "
                        "WHERE action = 'customer.reset_2fa'")
    assert row[:3] == ("cli", "customer.reset_2fa", f"customer:{cid}") and row[5] == reason
    assert json.loads(row[3]) == {"two_factor": "on", "recovery_codes_left": 10, "sessions": 1}
    assert json.loads(row[4]) == {"two_factor": "off", "sessions": 0}

    assert v.get("/keys").status_code == 303  # the session ended
    assert v.login("lost-phone@example.com").headers["Location"] == "/dashboard"  # password alone now
    again = cli(tmp_path, sqlite_url, "reset-2fa", "--customer", str(cid), "--reason", reason)
    assert again.exit_code != 0 and "not on" in again.output
    missing = cli(tmp_path, sqlite_url, "reset-2fa", "--customer", "nobody@example.com", "--reason", reason)
    assert missing.exit_code != 0 and "no customer" in missing.output
    assert gateway.sql("SELECT count(*) FROM console_audit_log WHERE action = 'customer.reset_2fa'")[0][0] == 1
