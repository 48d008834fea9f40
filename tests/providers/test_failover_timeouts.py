"""Failover on a slow upstream (timeout) and on a dead one (connection refused)."""

import time

import openai

from tests.conftest import gateway_config
from tests.support.servers import free_port


def test_timeout_and_refused_routes_fail_over_to_a_healthy_one(start_gateway, mock_upstream, sqlite_url):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens here
    config = gateway_config(mock_upstream.url, sqlite_url, providers={
        "mock": {"base_url": mock_upstream.url + "/v1"},
        "impatient": {"base_url": mock_upstream.url + "/v1", "read_timeout": 0.3},
        "dead": {"base_url": dead, "connect_timeout": 1},
    }, models=[{"name": "resilient", "type": "chat", "input_price": "1", "output_price": "1",
                "routes": [{"provider": "dead", "model": "mock-chat", "priority": 1},
                           {"provider": "impatient", "model": "mock-chat-slow", "priority": 2},
                           {"provider": "mock", "model": "mock-chat", "priority": 3}]}])
    gateway = start_gateway(config)
    cid, key = gateway.customer("resilient@example.com")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    started = time.monotonic()
    for stream in (False, True):
        result = client.chat.completions.create(model="resilient", stream=stream,
                                                messages=[{"role": "user", "content": "Hi"}])
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in result if c.choices)
        else:
            assert result.choices[0].message.content
    assert time.monotonic() - started < 1.4 * 2  # the slow route was abandoned after 0.3 s, not 1.5 s
    assert [(u.provider, u.status) for u in gateway.usage(cid)] == [("mock", 200), ("mock", 200)]
