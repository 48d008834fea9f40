"""The tokenizer loads off the event loop (issue 9, item 8).

A fresh `aigateway serve` process (the tokenizer is loaded once per process) gets its
first request that must be estimated (an upstream without usage) while another client
keeps asking for /v1/models. Before, the load ran on the event loop and every other
request waited for all of it; now it runs in a thread and the others are answered
meanwhile. The RSS before and after is printed: the tables cost memory only once a
count is needed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.request

import orjson

from aigateway.accounts.service import create_customer, create_key
from aigateway.store.db import create_engine
from tests.support.servers import free_port


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _post(url: str, key: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=orjson.dumps(body), method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, orjson.loads(response.read())


def _get(url: str, key: str) -> float:
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.monotonic() - started


def test_first_estimate_loads_the_tokenizer_without_stalling_other_requests(mock_upstream, tmp_path):
    port = free_port()
    db = tmp_path / "gw.db"
    config = tmp_path / "aigateway.toml"
    config.write_text(f"""
discover_ollama = false
[server]
port = {port}
[database]
url = "sqlite+aiosqlite:///{db}"
[providers.mock]
base_url = "{mock_upstream.url}/v1"
[[models]]
name = "free-chat"
free = true
routes = [{{ provider = "mock", model = "mock-chat" }}]
[[models]]
name = "free-nousage"
free = true
routes = [{{ provider = "mock", model = "mock-chat-nousage" }}]
""")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AIGATEWAY_DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "aigateway", "--config", str(config), "serve"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).read()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.1)

        async def make_key() -> str:
            engine = create_engine(f"sqlite+aiosqlite:///{db}")
            async with engine.begin() as conn:
                customer_id = await create_customer(conn, "tok@example.com")
                _, key = await create_key(conn, customer_id, "test", None)
            await engine.dispose()
            return key.secret

        key = asyncio.run(make_key())
        messages = [{"role": "user", "content": "count me"}]
        for _ in range(20):  # warm: upstream usage, no tokenizer needed
            assert _post(base + "/v1/chat/completions", key, {"model": "free-chat", "messages": messages})[0] == 200
        rss_before = _rss_mb(process.pid)

        estimated: dict = {}

        def first_estimate() -> None:
            started = time.monotonic()
            estimated["answer"] = _post(base + "/v1/chat/completions", key,
                                        {"model": "free-nousage", "messages": messages})
            estimated["seconds"] = time.monotonic() - started

        worker = threading.Thread(target=first_estimate)
        latencies: list[float] = []
        worker.start()
        while worker.is_alive():
            latencies.append(_get(base + "/v1/models", key))
        worker.join()
        rss_after = _rss_mb(process.pid)
        status, payload = estimated["answer"]
        assert status == 200 and payload["choices"]
        print(f"\nfirst estimate took {estimated['seconds']:.2f} s; {len(latencies)} other requests meanwhile, "
              f"slowest {max(latencies):.3f} s; RSS {rss_before:.0f} MB -> {rss_after:.0f} MB")
        # On the event loop, the load held every other request for all of its duration.
        assert len(latencies) >= 10
        assert max(latencies) < max(0.5 * estimated["seconds"], 0.3)
        assert rss_after > rss_before + 30  # the tables were loaded now, not at start-up
        for _ in range(5):  # loaded once: later estimates are quick
            started = time.monotonic()
            assert _post(base + "/v1/chat/completions", key, {"model": "free-nousage", "messages": messages})[0] == 200
            assert time.monotonic() - started < 1.0
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
