"""/readyz with Redis: ready while the private Redis answers, 503 + Retry-After once it is gone."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import gateway_config
from tests.console.conftest import console_url
from tests.support.servers import free_port


def _ready(base: str) -> tuple[int, dict, str | None]:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=10) as r:
            return r.status, json.loads(r.read()), None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get("Retry-After")


@pytest.mark.redis
def test_readyz_follows_redis(start_gateway, mock_upstream, sqlite_url, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
            assert time.monotonic() < deadline, "private redis did not start"
            time.sleep(0.05)
        gateway = start_gateway(gateway_config(mock_upstream.url, sqlite_url,
                                               redis={"url": f"redis://127.0.0.1:{port}/0", "key_prefix": "t-ready"}))
        base = console_url(gateway)
        status, body, _ = _ready(base)
        assert status == 200 and body["checks"] == {"database": "ok", "redis": "ok", "recorder": "ok"}
        proc.terminate()
        proc.wait(10)
        gateway.wait_for(lambda: _ready(base)[0] == 503, timeout=15)
        status, body, retry = _ready(base)
        assert body["checks"]["redis"] == "failing" and body["checks"]["database"] == "ok" and retry == "5"
        assert "redis://" not in json.dumps(body)  # no address (or password) in the answer
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
