"""`aigateway admin credit | adjust | balance`: the operator's money commands, idempotent by reference."""

from click.testing import CliRunner

from aigateway.cli import main


def test_credit_adjust_and_balance(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGATEWAY_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("AIGATEWAY_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("discover_ollama = false\n")
    runner = CliRunner()

    def admin(*args: str):
        return runner.invoke(main, ["admin", *args])

    assert admin("customer", "create", "--email", "ada@example.com").exit_code == 0
    credited = admin("credit", "--customer", "ada@example.com", "--amount", "5", "--reference", "inv-1")
    assert credited.exit_code == 0 and "credit 5.000000 TMT to customer 1: applied" in credited.output
    again = admin("credit", "--customer", "1", "--amount", "5", "--reference", "inv-1")
    assert "nothing changed" in again.output and "balance 5.000000 TMT" in again.output
    adjusted = admin("adjust", "--customer", "1", "--amount", "-3.5", "--reason", "refund of a double top-up")
    assert adjusted.exit_code == 0 and "adjustment -3.500000 TMT to customer 1: applied" in adjusted.output
    assert "balance 1.500000 TMT" in adjusted.output
    assert admin("balance", "--customer", "1").output.strip() == "balance 1.500000 TMT (ledger sum 1.500000 TMT)"
    refused = admin("adjust", "--customer", "1", "--amount", "0", "--reason", "nothing")
    assert refused.exit_code == 1 and "must not be zero" in refused.output
    missing = admin("credit", "--customer", "nobody@example.com", "--amount", "1")
    assert missing.exit_code == 1 and "Traceback" not in missing.output
