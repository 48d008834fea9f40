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
