"""The operator's commands: address, deposits-watcher --once, list, pending, rescan, credit, status."""

from __future__ import annotations

import json

from click.testing import CliRunner

from aigateway.cli import main
from tests.deposits.conftest import VECTORS, deposits_section


def _toml(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_operator_commands(tmp_path, tron, monkeypatch):
    monkeypatch.delenv("AIGATEWAY_DATABASE_URL", raising=False)
    section = deposits_section(tron.url)
    lines = ["discover_ollama = false", "[database]", f'url = "sqlite+aiosqlite:///{tmp_path}/cli.db"', "[deposits]"]
    lines += [f"{k} = {_toml(v)}" for k, v in section.items()]
    config = tmp_path / "aigateway.toml"
    config.write_text("\n".join(lines) + "\n")
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(main, ["--config", str(config), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    cli("admin", "customer", "create", "--email", "alice@example.com")
    assert VECTORS[0] in cli("admin", "deposits", "address", "--customer", "alice@example.com")
    assert VECTORS[0] in cli("admin", "deposits", "address", "--customer", "1")  # permanent

    tx = tron.transfer(VECTORS[0], 12_500_000, solid=True)
    late = tron.transfer(VECTORS[0], 1_000_000, confirmed=False)
    assert "pass done" in cli("deposits-watcher", "--once")
    assert "43.750000" in cli("admin", "balance", "--customer", "1")
    listed = cli("admin", "deposits", "list")
    assert "12.5" in listed and "43.750000" in listed and f"{tx.tx_id}:0" in listed
    assert late.tx_id in cli("admin", "deposits", "pending")

    tron.solidify(late)
    out = cli("admin", "deposits", "rescan", "--address", VECTORS[0], "--since", "2020-01-01", "--now")
    assert "1 credited" in out
    assert "47.250000" in cli("admin", "balance", "--customer", "1")

    # A manual credit (e.g. USDT sent to a wrong address) is an idempotent ledger adjustment.
    args = ("admin", "deposits", "credit", "--customer", "1", "--usdt", "2", "--reason", "sent to old address",
            "--reference", "case-7")
    assert "applied" in cli(*args)
    assert "nothing changed" in cli(*args)
    assert "54.250000" in cli("admin", "balance", "--customer", "1")

    status = cli("admin", "deposits", "status")
    assert "1 address(es), 0 pending" in status and "rate 3.50" in status
    assert "credited" in cli("admin", "deposits", "pending", "--all")

    bad = runner.invoke(main, ["--config", str(config), "admin", "deposits", "rescan", "--address",
                               "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "--since", "2020-01-01"])
    assert bad.exit_code != 0 and "not one of our deposit addresses" in bad.output
