"""`aigateway admin key limits`: the operator shows and changes a key's limits."""

from click.testing import CliRunner

from aigateway.cli import main


def test_operator_sets_and_clears_limits(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGATEWAY_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("AIGATEWAY_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("discover_ollama = false\n")
    runner = CliRunner()
    assert runner.invoke(main, ["admin", "customer", "create", "--email", "ops@example.com"]).exit_code == 0
    made = runner.invoke(main, ["admin", "key", "create", "--customer", "ops@example.com"])
    assert made.exit_code == 0, made.output
    shown = runner.invoke(main, ["admin", "key", "limits", "1", "--spend-cap", "2.5", "--period", "day", "--rpm", "60",
                                 "--concurrency", "4", "--expires", "2030-01-31", "--models", "a,b"])
    assert shown.exit_code == 0, shown.output
    for line in ("spend cap     2.500000 TMT per day", "requests/min  60", "tokens/min    none", "concurrency   4",
                 "expires       2030-01-31 00:00 UTC", "models        a, b"):
        assert line in shown.output
    cleared = runner.invoke(main, ["admin", "key", "limits", "1", "--rpm", "none", "--models", "all"])
    assert "requests/min  none" in cleared.output and "concurrency   4" in cleared.output
    assert "models        all" in cleared.output
    bad = runner.invoke(main, ["admin", "key", "limits", "1", "--rpm", "0"])
    assert bad.exit_code != 0 and "at least 1" in bad.output
    missing = runner.invoke(main, ["admin", "key", "limits", "99"])
    assert missing.exit_code == 1 and "no key 99" in missing.output
