"""A gateway in front of the misbehaving fake upstream (tests/api/fake_upstream.py)."""

from __future__ import annotations

import pytest

from tests.api.fake_upstream import create_fake_app
from tests.conftest import gateway_config
from tests.support.servers import ServerThread

FAULTS = ("cut", "html", "not-completion", "json", "stall", "done-in-text", "malformed", "garbage", "no-done",
          "odd-choices", "silent", "slow", "good")
READ_TIMEOUT = 0.5  # seconds of silence before a route counts as stalled


@pytest.fixture(scope="session")
def fake_upstream():
    server = ServerThread(create_fake_app).start()
    yield server
    server.stop()


def _chat(name: str, *upstreams: str) -> dict:
    return {"name": name, "type": "chat", "input_price": "0.35", "output_price": "1.40", "max_output_tokens": 1024,
            "context_length": 8192,
            "routes": [{"provider": "fake", "model": u, "priority": i + 1} for i, u in enumerate(upstreams)]}


@pytest.fixture
def faulty_gateway(start_gateway, fake_upstream, sqlite_url):
    """Models: `<fault>` (that route only) and `<fault>-then-good` (then a good route)."""
    models = [_chat(f, f) for f in FAULTS] + [_chat(f"{f}-then-good", f, "good") for f in FAULTS]
    models += [{"name": f"embed-{f}", "type": "embedding", "input_price": "0.02",
                "routes": [{"provider": "fake", "model": f, "priority": 1}]} for f in ("html", "not-completion")]
    models += [{"name": f"embed-{f}-then-good", "type": "embedding", "input_price": "0.02",
                "routes": [{"provider": "fake", "model": f, "priority": 1},
                           {"provider": "fake", "model": "good", "priority": 2}]} for f in ("html", "not-completion")]
    config = gateway_config(fake_upstream.url, sqlite_url, models=models,
                            providers={"fake": {"base_url": fake_upstream.url + "/v1", "read_timeout": READ_TIMEOUT}})
    return start_gateway(config)
