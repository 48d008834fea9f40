"""`aigateway admin operator create` and the audit rows the CLI's money commands write."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from aigateway.cli import main


def test_operator_create_prints_a_one_time_link_and_cli_credit_is_audited(tmp_path):
    db = tmp_path / "gw.db"
    config = tmp_path / "gw.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n[admin]\nport = 9123\n')
    run = lambda *args: CliRunner().invoke(main, ["--config", str(config), *args])  # noqa: E731
    r = run("admin", "operator", "create", "--email", "Boss@Example.com", "--role", "admin")
    assert r.exit_code == 0, r.output
    link = r.stdout.strip().splitlines()[-1]
    assert link.startswith("http://127.0.0.1:9123/enrol/") and len(link.rsplit("/", 1)[1]) >= 40
    assert run("admin", "operator", "create", "--email", "boss@example.com", "--role", "viewer").exit_code == 1
    assert run("admin", "operator", "create", "--email", "x@example.com", "--role", "root").exit_code == 2
    assert run("admin", "customer", "create", "--email", "c@example.com").exit_code == 0
    r = run("admin", "credit", "--customer", "c@example.com", "--amount", "7", "--memo", "bank transfer 17")
    assert r.exit_code == 0, r.output
    with sqlite3.connect(db) as conn:
        token_hash = conn.execute("SELECT enrol_token_hash, status FROM console_operators").fetchone()
        rows = conn.execute("SELECT actor, action, target, before, after, reason FROM console_audit_log "
                            "ORDER BY id").fetchall()
    assert token_hash[1] == "pending" and link.rsplit("/", 1)[1] not in token_hash[0]  # stored hashed
    assert [r[1] for r in rows] == ["operator.create", "customer.credit"]
    assert rows[1][0] == "cli" and '"7.000000"' in rows[1][4] and rows[1][5] == "bank transfer 17"


def test_operator_reset_replaces_every_credential(tmp_path):
    db = tmp_path / "gw.db"
    config = tmp_path / "gw.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n')
    run = lambda *args: CliRunner().invoke(main, ["--config", str(config), *args])  # noqa: E731
    first = run("admin", "operator", "create", "--email", "ops@example.com", "--role", "viewer").stdout.strip()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE console_operators SET status = 'active', password_hash = 'x', totp_last_step = 99")
        conn.execute("INSERT INTO console_recovery_codes (code_hash, operator_id) VALUES ('h', 1)")
        seed = conn.execute("SELECT totp_secret FROM console_operators").fetchone()[0]
    r = run("admin", "operator", "reset", "--email", "ops@example.com")
    assert r.exit_code == 0 and r.stdout.strip() != first
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT status, password_hash, totp_secret, totp_last_step FROM console_operators").fetchone()
        codes = conn.execute("SELECT count(*) FROM console_recovery_codes").fetchone()[0]
    assert row[0] == "pending" and row[1] is None and row[2] != seed and row[3] == 0 and codes == 0
    assert "ops@example.com" in run("admin", "operator", "list").stdout
    assert run("admin", "operator", "reset", "--email", "nobody@example.com").exit_code == 1


def test_audit_csv_neutralises_formulas():
    from types import SimpleNamespace

    from aigateway.console.audit import to_csv

    row = SimpleNamespace(id=1, at=None, actor="cli", action="customer.credit", target="customer:1",
                          before=None, after=None, reason="=HYPERLINK(\"http://x\")")
    assert "'=HYPERLINK" in to_csv([row])
