"""Settlement is one context manager (`async with call:`, api/call.py): whatever ends the call, its
hold is settled or released exactly once, and the usage record says what was charged."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import pytest

from aigateway.accounts.keycache import KeyInfo
from aigateway.api import errors
from aigateway.api.call import Call
from aigateway.billing.wallet import Hold
from aigateway.catalog import Model, Price
from aigateway.providers.routes import Provider, Route

PRICE = Price(version_id=7, input_price=1_000_000, output_price=2_000_000)  # units per 1M tokens
ROUTE = Route(Provider("up", "http://127.0.0.1:1/v1"), "up-model")


class FakeWallet:
    """Counts what settlement does to the hold (the real wallets are tested in tests/billing)."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.settled: list[tuple[int, int]] = []
        self.released: list[int] = []
        self.gate = gate  # settle waits for it (a Redis round trip the test can cancel the call in)
        self.settling = asyncio.Event()
        self.lock = asyncio.Lock()

    async def settle(self, hold: Hold, cost: int) -> None:
        self.settling.set()
        if self.gate is not None:
            await self.gate.wait()
        self.settled.append((hold.id, cost))

    async def release(self, hold: Hold) -> None:
        self.released.append(hold.id)


def _call(hold_amount: int = 10_000, *, stream: bool = False, wallet: FakeWallet | None = None) -> Call:
    records: list[Any] = []
    gateway: Any = SimpleNamespace(wallet=wallet or FakeWallet(), recorder=SimpleNamespace(record=records.append),
                                   key_limits=None, records=records)
    model = Model(name="m", type="chat", routes=[ROUTE], price=PRICE)
    return Call(id="req_1", endpoint="chat", key=KeyInfo(1, 42, None), model=model, price=PRICE, body={},
                hold=Hold(5, 42, hold_amount, 0.0), started=0.0, gateway=gateway, stream=stream)


async def test_a_charged_call_is_settled_once_even_if_it_fails_afterwards() -> None:
    call = _call()
    with pytest.raises(RuntimeError):
        async with call:
            assert call.charge(status=200, route=ROUTE, input_tokens=1_000, output_tokens=1_000) == 3_000
            raise RuntimeError("rendering the answer failed")
    wallet, [record] = call.gateway.wallet, call.gateway.records
    assert wallet.settled == [(5, 3_000)] and wallet.released == []
    assert (record.status, record.cost, record.provider, record.capped) == (200, 3_000, "up", False)
    assert call.hold is None  # a second exit could not touch it again


async def test_an_api_error_before_any_charge_is_recorded_at_no_cost() -> None:
    call = _call()
    with pytest.raises(errors.APIError) as raised:
        async with call:
            raise errors.providers_unavailable("m")
    wallet, [record] = call.gateway.wallet, call.gateway.records
    assert wallet.released == [5] and wallet.settled == []
    assert (record.status, record.cost, record.error) == (503, 0, raised.value.code)
    assert raised.value.headers["X-Request-Id"] == "req_1"


@pytest.mark.parametrize("how", ["exception", "no charge"])
async def test_a_call_ended_without_an_answer_frees_its_hold_unrecorded(how: str) -> None:
    call = _call()
    with pytest.raises(KeyError) if how == "exception" else contextlib.nullcontext():
        async with call:
            if how == "exception":
                raise KeyError("a bug")
    assert call.gateway.wallet.released == [5] and call.gateway.wallet.settled == []
    assert call.gateway.records == []


async def test_more_than_the_hold_is_charged_the_hold_and_marked_capped() -> None:
    call = _call(hold_amount=2_000)
    async with call:
        assert call.charge(status=200, route=ROUTE, input_tokens=1_000, output_tokens=1_000) == 2_000
    [record] = call.gateway.records
    assert call.gateway.wallet.settled == [(5, 2_000)] and record.capped and record.input_tokens == 1_000


async def test_the_first_charge_stands() -> None:
    call = _call()
    async with call:
        call.charge(status=200, route=ROUTE, input_tokens=1_000, output_tokens=0)
        assert call.charge(status=502, error="later") == 1_000
    assert [r.status for r in call.gateway.records] == [200]


async def test_a_stream_is_settled_even_if_cancelled_while_settling() -> None:
    gate = asyncio.Event()
    wallet = FakeWallet(gate)
    call = _call(stream=True, wallet=wallet)

    async def handler() -> None:
        async with call:
            call.charge(status=200, route=ROUTE, input_tokens=1_000, output_tokens=0)

    task = asyncio.create_task(handler())
    await asyncio.wait_for(wallet.settling.wait(), 5)  # the exit is settling
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and wallet.settled == []
    gate.set()  # the settlement goes on although its task was cancelled
    deadline = asyncio.get_running_loop().time() + 5
    while not wallet.settled:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert wallet.settled == [(5, 1_000)] and [r.cost for r in call.gateway.records] == [1_000]
