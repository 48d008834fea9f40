"""A client that leaves mid-stream is billed for what the upstream generated."""

import asyncio

import aiohttp
import orjson

from aigateway.api.tokens import count_text_tokens
from aigateway.demo.mock_upstream import REPLY
from aigateway.money import request_cost


def test_client_disconnect_mid_stream_bills_the_full_generation(gateway):
    cid, key = gateway.customer("leaver@example.com", credit="10")

    async def read_a_little_then_leave():
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                gateway.base_url + "/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                data=orjson.dumps({"model": "mock-long", "stream": True,
                                   "messages": [{"role": "user", "content": "Tell me a long story"}]}))
            assert response.status == 200
            got = 0
            async for line in response.content:
                got += line.startswith(b"data:")
                if got >= 5:
                    break
            response.close()  # hang up while the upstream is still generating

    asyncio.run(read_a_little_then_leave())
    [usage] = gateway.wait_for(lambda: gateway.usage(cid), timeout=15)
    # The mock generated its whole long reply and reported usage for it.
    full = count_text_tokens("".join(w + " " for w in ((REPLY + " ") * 20).split()))
    assert usage.output_tokens == full and not usage.estimated
    assert usage.error == "client disconnected"
    assert gateway.balance(cid) == 10_000_000 - request_cost(usage.input_tokens, usage.output_tokens,
                                                             350_000, 1_400_000)
