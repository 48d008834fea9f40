"""A price source's token limits pass guardrails before any hold is sized from them.

Issue 9: a source's context_length of 1 shrank holds (the balance went negative);
one of 2**31 made every request without max_tokens a 402. Here: insane values are
refused, big changes are held for the operator, and neither reaches the catalog.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import openai
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from aigateway.catalog import Model
from aigateway.cli import main
from aigateway.pricing.catalog import Catalog
from aigateway.pricing.limits import apply_source_limits, confirm_limits, held_limits, reject_limits
from aigateway.pricing.rules import is_big_limit_change, limits_problem
from aigateway.pricing.service import PricingError
from aigateway.pricing.tables import model_limits
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade
from tests.pricing.conftest import models_of, pricing_config
from tests.pricing.test_fetch import last_fetch, wait_fetches

HUGE = 2**31


def test_bounds_and_big_changes():
    assert limits_problem(128_000, 16_384) is None
    assert limits_problem(None, None) is None and limits_problem(256, 256) is None
    assert "context_length 1 " in limits_problem(1, None)
    assert "context_length 2147483648 " in limits_problem(HUGE, None)
    assert "max_output_tokens 2147483648 " in limits_problem(None, HUGE)
    assert "max_output_tokens 0 " in limits_problem(8_192, 0)
    assert "outside 1..8192" in limits_problem(8_192, 8_193)  # an output cap above the context
    factor = Decimal(2)
    assert not is_big_limit_change((128_000, 16_384), (256_000, 8_192), factor)  # x2 and /2: allowed
    assert is_big_limit_change((128_000, 16_384), (256_001, 16_384), factor)
    assert is_big_limit_change((128_000, 16_384), (128_000, 8_191), factor)
    assert not is_big_limit_change((None, None), (1_000_000, 100), factor)  # nothing known before


def test_limits_are_refused_held_confirmed_and_rejected(db_url):
    async def scenario():
        engine = create_engine(db_url)
        await upgrade(engine)
        catalog = Catalog([Model(name="m", type="chat", routes=[])])
        factor = Decimal(2)

        async def apply(context, output):
            async with engine.begin() as conn:
                return await apply_source_limits(conn, "m", "src", context, output, factor)

        async def in_force():
            await catalog.refresh(engine)
            model = catalog.get("m")
            return model.context_length, model.max_output_tokens

        async def decide(fn):
            async with engine.begin() as conn:
                return await fn(conn, "m")

        seen = {}
        seen["first_bad"] = (await apply(1, None))["outcome"]
        seen["after_first_bad"] = await in_force()
        seen["first"] = (await apply(128_000, 16_384))["outcome"]
        seen["tiny"] = (await apply(1, None))["outcome"]
        seen["huge"] = (await apply(HUGE, HUGE))["outcome"]
        seen["huge_output"] = (await apply(None, HUGE))["outcome"]
        seen["after_bad"] = await in_force()
        seen["small_move"] = (await apply(200_000, None))["outcome"]  # output cap kept: not reported
        seen["after_small"] = await in_force()
        seen["big"] = (await apply(1_000_000, 16_384))["outcome"]
        seen["again"] = await apply(1_000_000, 16_384)
        seen["after_big"] = await in_force()
        async with engine.connect() as conn:
            seen["held"] = [(r.model, r.held_context_length) for r in await held_limits(conn)]
        await decide(reject_limits)
        seen["after_reject"] = await apply(1_000_000, 16_384)
        seen["still"] = await in_force()
        with pytest.raises(PricingError):
            await decide(confirm_limits)  # nothing held any more
        seen["other_big"] = (await apply(2_000_000, 16_384))["outcome"]
        await decide(confirm_limits)
        seen["confirmed"] = await in_force()
        # A row written before the guardrails (or by hand) is not trusted by the catalog either.
        async with engine.begin() as conn:
            await conn.execute(model_limits.update().values(context_length=1))
        seen["unchecked_row"] = await in_force()
        await engine.dispose()
        return seen

    seen = asyncio.run(scenario())
    assert seen["first_bad"] == "refused" and seen["after_first_bad"] == (None, None)
    assert seen["first"] == "applied"
    assert seen["tiny"] == seen["huge"] == seen["huge_output"] == "refused"
    assert seen["after_bad"] == (128_000, 16_384)
    assert seen["small_move"] == "applied" and seen["after_small"] == (200_000, 16_384)
    assert seen["big"] == "held" and seen["again"]["already"] == "waiting for the operator"
    assert seen["after_big"] == (200_000, 16_384) and seen["held"] == [("m", 1_000_000)]
    assert seen["after_reject"]["already"] == "rejected by the operator" and seen["still"] == (200_000, 16_384)
    assert seen["other_big"] == "held" and seen["confirmed"] == (2_000_000, 16_384)
    assert seen["unchecked_row"] == (None, None)  # the whole row is distrusted: the billing default applies


@pytest.fixture
def priced(start_gateway, mock_upstream, sqlite_url, source):
    gw = start_gateway(pricing_config(mock_upstream.url, sqlite_url, source.url))
    cid, key = gw.customer("limits@example.com", credit="1")
    gw.wait_for(lambda: models_of(gw, key).get("or-chat"), timeout=10)
    return gw, cid, key


def test_a_source_cannot_shrink_or_blow_up_holds(priced, source, tmp_path):
    gw, cid, key = priced
    client = openai.OpenAI(api_key=key, base_url=gw.base_url)
    entry = source.or_model("vendor/chat")

    def limits():
        model = gw.gateway.catalog.get("or-chat")
        return model.context_length, model.max_output_tokens

    def limits_outcome():
        return json.loads(last_fetch(gw, "or").detail)["or-chat"].get("limits") or {"outcome": None}

    assert limits() == (128_000, 16_384)
    # 2**31 itself is dropped by the source parser (not a count) and so changes nothing;
    # the largest count it passes, 2**31 - 1, meets the guardrail. None: no limits reported.
    cases = ((1, 16_384, "refused"), (HUGE - 1, 16_384, "refused"), (128_000, HUGE - 1, "refused"),
             (HUGE, HUGE, None))
    for context, output, outcome in cases:
        entry["context_length"] = entry["top_provider"]["context_length"] = context
        entry["top_provider"]["max_completion_tokens"] = output
        wait_fetches(gw, "or")
        assert limits_outcome()["outcome"] == outcome
        assert last_fetch(gw, "or").problems >= (outcome == "refused")
        assert limits() == (128_000, 16_384)
        # a request without max_tokens on a 1 TMT balance is held for the checked cap: served, not 402
        reply = client.chat.completions.create(model="or-chat", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content

    # a big (x8) but sane change is held for the operator, then confirmed with the CLI
    entry["context_length"] = entry["top_provider"]["context_length"] = 1_000_000
    entry["top_provider"]["max_completion_tokens"] = 16_384
    wait_fetches(gw, "or")
    assert limits_outcome()["outcome"] == "held" and limits() == (128_000, 16_384)
    config = tmp_path / "op.toml"
    config.write_text(f'[database]\nurl = "{gw.config.database.url}"\n')
    runner = CliRunner()
    listed = runner.invoke(main, ["--config", str(config), "admin", "price", "held-limits"])
    assert listed.exit_code == 0 and "or-chat" in listed.output and "128000 -> 1000000" in listed.output
    done = runner.invoke(main, ["--config", str(config), "admin", "price", "confirm-limits", "or-chat"])
    assert done.exit_code == 0, done.output
    gw.run(gw.gateway.catalog.refresh(gw.engine))
    assert limits() == (1_000_000, 16_384)

    async def row():
        async with gw.engine.connect() as conn:
            return (await conn.execute(select(model_limits).where(model_limits.c.model == "or-chat"))).first()

    assert gw.run(row()).held_status is None
    again = runner.invoke(main, ["--config", str(config), "admin", "price", "reject-limits", "or-chat"])
    assert again.exit_code == 1 and "no held limits for or-chat" in again.output
