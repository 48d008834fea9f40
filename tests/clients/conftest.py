"""A gateway in front of this package's fake chat upstream (fake_upstream.py), plus a dead provider."""

from __future__ import annotations

import urllib.request

import orjson
import pytest

from tests.clients.fake_upstream import create_fake_app
from tests.conftest import gateway_config
from tests.support.servers import ServerThread, free_port

IN, OUT = 350_000, 1_400_000  # units per 1M tokens: 0.35 / 1.40 TMT


@pytest.fixture(scope="session")
def fake_chat_upstream():
    server = ServerThread(create_fake_app).start()
    yield server
    server.stop()


def _model(name: str, *routes: tuple[str, str]) -> dict:
    return {"name": name, "type": "chat", "input_price": "0.35", "output_price": "1.40", "max_output_tokens": 4096,
            "context_length": 100_000,
            "routes": [{"provider": p, "model": m, "priority": i + 1} for i, (p, m) in enumerate(routes)]}


@pytest.fixture
def clients_gateway(start_gateway, fake_chat_upstream, sqlite_url):
    models = [_model(n, ("fake", n)) for n in ("fake-chat", "fake-nousage", "fake-drop", "fake-long", "fake-badreq")]
    models.append(_model("fake-failover", ("dead", "fake-chat"), ("fake", "fake-chat")))
    providers = {"fake": {"base_url": fake_chat_upstream.url + "/v1"},
                 "dead": {"base_url": f"http://127.0.0.1:{free_port()}/v1"}}
    return start_gateway(gateway_config(fake_chat_upstream.url, sqlite_url, models=models, providers=providers))


def received(fake_chat_upstream) -> list[dict]:
    from tests.clients.fake_upstream import RECEIVED

    return fake_chat_upstream.app[RECEIVED]


def raw_post(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=orjson.dumps(body), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
