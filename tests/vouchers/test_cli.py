"""The operator's commands: create (CSV once, hashes only), list, void, report (== ledger), locks, audit."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3

from click.testing import CliRunner

from aigateway.cli import main
from aigateway.store.db import create_engine
from aigateway.vouchers import codes
from aigateway.vouchers.service import Redeemed, redeem


def _redeem(db_url: str, customer_id: int, code: str):
    async def run():
        engine = create_engine(db_url)
        try:
            return await redeem(engine, customer_id, code, "192.0.2.1")
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_operator_commands_and_report_equal_the_ledger(tmp_path, monkeypatch):
    monkeypatch.delenv("AIGATEWAY_DATABASE_URL", raising=False)
    db = tmp_path / "cli.db"
    db_url = f"sqlite+aiosqlite:///{db}"
    config = tmp_path / "aigateway.toml"
    config.write_text(f'discover_ollama = false\n[database]\nurl = "{db_url}"\n')
    runner = CliRunner()

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--config", str(config), *args])
        assert result.exit_code == code, result.output
        return result.stdout  # the CSV goes to stdout, messages to stderr

    cli("admin", "customer", "create", "--email", "cash@example.com")
    out = tmp_path / "batch1.csv"
    cli("admin", "vouchers", "create", "--amount", "50", "--count", "100", "--label", "Mary bazaar",
        "--out", str(out))
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 100 and {r["label"] for r in rows} == {"Mary bazaar"}
    assert {r["amount_tmt"] for r in rows} == {"50.00"}
    assert all(codes.normalise(r["code"]) for r in rows)  # every code passes its own check
    # exported once: the file is never overwritten, and the database holds no code in clear
    cli("admin", "vouchers", "create", "--amount", "1", "--count", "1", "--label", "x", "--out", str(out), code=1)
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert not any(r["code"] in dump or codes.normalise(r["code"]) in dump for r in rows)
    assert dump.count("INSERT INTO \"vouchers\"") == 100

    # a second batch to stdout, one that expires
    second = cli("admin", "vouchers", "create", "--amount", "12.5", "--count", "3", "--label", "Agent Dashoguz",
                 "--expires", "2099-12-31")
    codes2 = [r["code"] for r in csv.DictReader(io.StringIO(second))]
    assert len(codes2) == 3

    assert isinstance(_redeem(db_url, 1, rows[0]["code"]), Redeemed)
    assert isinstance(_redeem(db_url, 1, rows[1]["code"]), Redeemed)
    assert isinstance(_redeem(db_url, 1, codes2[0]), Redeemed)

    listed = cli("admin", "vouchers", "list")
    assert "Mary bazaar" in listed and "Agent Dashoguz" in listed
    line1 = next(x for x in listed.splitlines() if "Mary bazaar" in x).split()
    assert line1[4:7] == ["100", "2", "98"]  # count, redeemed, still open

    cli("admin", "vouchers", "void", rows[2]["code"])
    cli("admin", "vouchers", "void", rows[2]["code"], code=1)  # already void
    cli("admin", "vouchers", "void", "--batch", "2")
    assert _redeem(db_url, 1, codes2[1]).reason == "invalid"
    assert _redeem(db_url, 1, rows[2]["code"]).reason == "invalid"
    cli("admin", "vouchers", "void", "--batch", "99", code=1)  # no such batch

    report = cli("admin", "vouchers", "report")
    ledger = sqlite3.connect(db).execute("SELECT sum(amount) FROM ledger_entries WHERE kind = 'voucher'").fetchone()[0]
    assert ledger == 112_500_000  # 2 x 50 + 12.5 TMT
    total = next(x for x in report.splitlines() if "TOTAL" in x).split()
    # face value 100 x 50 + 3 x 12.5; redeemed 112.50; liability: 97 open x 50 (batch 2 voided)
    assert total[1:] == ["5037.50", "112.50", "4850.00"]
    assert "equals the redeemed sum" in report
    balance = sqlite3.connect(db).execute("SELECT balance FROM customers WHERE id = 1").fetchone()[0]
    assert balance == ledger

    audit = cli("admin", "vouchers", "audit")
    for action in ("create", "void-code", "void-batch", "report"):
        assert action in audit
    assert "no redemption locks" in cli("admin", "vouchers", "locks")
