"""One rate: deposits credit at the USD rate of `admin fx set` minus the spread; a different deposit
rate is an explicit, recorded `admin deposits rate set`; each deposit records the rate it used."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from aigateway.cli import main
from aigateway.deposits.tables import deposit_rate_overrides, deposits
from aigateway.portal.pages import _deposit_view
from tests.deposits.conftest import VECTORS
from tests.deposits.test_review import _config_file


def test_deposits_follow_fx_set_and_the_tab_shows_that_rate(tmp_path, tron, monkeypatch):
    monkeypatch.delenv("AIGATEWAY_DATABASE_URL", raising=False)
    config = _config_file(tmp_path, tron, spread="0.02")  # legacy [deposits] rate = 3.50 is only a fallback
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(main, ["--config", str(config), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    cli("admin", "customer", "create", "--email", "a@example.com")
    cli("admin", "deposits", "address", "--customer", "1")
    cli("admin", "fx", "set", "USD", "3.60")
    assert "rate 3.528 TMT per USDT (fx USD 3.60, spread 0.02)" in cli("admin", "deposits", "status")
    first = tron.transfer(VECTORS[0], 10_000_000, solid=True)
    cli("deposits-watcher", "--once")
    assert "35.280000" in cli("admin", "balance", "--customer", "1")  # 10 x 3.60 x 0.98

    cli("admin", "deposits", "rate", "set", "3.40", "--note", "promotion ended")
    second = tron.transfer(VECTORS[0], 10_000_000, solid=True)
    cli("deposits-watcher", "--once")
    assert "68.600000" in cli("admin", "balance", "--customer", "1")  # + 10 x 3.40 x 0.98
    cli("admin", "deposits", "rate", "clear")
    cli("admin", "fx", "set", "USD", "3.70")

    from aigateway.deposits.config import DepositsConfig
    from aigateway.deposits.service import DepositsService
    from aigateway.store.db import create_engine
    from tests.deposits.conftest import deposits_section

    async def check():
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/review.db")
        service = DepositsService(DepositsConfig.model_validate(deposits_section(tron.url, spread="0.02")), engine)
        try:
            async with engine.connect() as conn:
                recorded = {r.tx_id: (r.rate, r.base_rate) for r in (await conn.execute(select(deposits))).all()}
                overrides = [(r.rate, r.note) for r in (await conn.execute(select(deposit_rate_overrides))).all()]
            view = _deposit_view(await service.overview(1))
        finally:
            await engine.dispose()
        return recorded, overrides, view

    import asyncio

    recorded, overrides, view = asyncio.run(check())
    assert recorded == {first.tx_id: ("3.528", "3.60"), second.tx_id: ("3.332", "3.40")}
    assert overrides == [("3.40", "promotion ended"), (None, "back to the USD rate")]
    assert view["rate"] == "3.626"  # what the Deposit tab shows: 3.70 x 0.98, the rate the next deposit gets
