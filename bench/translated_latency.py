"""Added latency of the translated routes (/v1/responses, /v1/messages) next to /v1/chat/completions, c=1.

    .venv/bin/python bench/translated_latency.py            # 1,000 requests per case
    .venv/bin/python bench/translated_latency.py -n 3000

A child process serves the gateway (billing on, SQLite) in front of the tests' fake chat
upstream (tests/clients/fake_upstream.py, 5 text pieces, usage included); this process sends
one request at a time over a kept-alive connection, taking turns between the routes, and
prints the median and p99 of each case's latency and the difference to chat completions.
Unary cases time the whole answer; stream cases the whole stream (read to its end).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELLO = [{"role": "user", "content": "Hello!"}]
CASES = {
    "chat": ("/v1/chat/completions", {"model": "fake-chat", "messages": HELLO}),
    "responses": ("/v1/responses", {"model": "fake-chat", "input": "Hello!"}),
    "messages": ("/v1/messages", {"model": "fake-chat", "max_tokens": 256, "messages": HELLO}),
}


def serve(info_path: str) -> None:
    """Child: the fake upstream and a gateway, until stdin closes."""
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.WARNING)
    from tests.clients.fake_upstream import create_fake_app
    from tests.conftest import gateway_config
    from tests.support.gateway import GatewayServer
    from tests.support.servers import ServerThread

    upstream = ServerThread(create_fake_app).start()
    chat = {"name": "fake-chat", "type": "chat", "input_price": "0.35", "output_price": "1.40",
            "routes": [{"provider": "fake", "model": "fake-chat"}]}
    db = tempfile.mkdtemp(prefix="aigw-bench-")
    config = gateway_config(upstream.url, f"sqlite+aiosqlite:///{db}/gw.db", models=[chat],
                            providers={"fake": {"base_url": upstream.url + "/v1"}})
    gateway = GatewayServer(config).start()
    _, key = gateway.customer("bench@example.com", credit="100000")
    Path(info_path).write_text(json.dumps({"port": gateway.port, "key": key}))
    sys.stdin.read()
    gateway.stop()
    upstream.stop()


def one(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict) -> float:
    start = time.perf_counter()
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise SystemExit(f"{path}: {response.status} {data[:300]!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1000, help="requests per case (default 1000)")
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile(suffix=".json") as info:
        child = subprocess.Popen([sys.executable, __file__, "--serve", info.name], stdin=subprocess.PIPE, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while not Path(info.name).read_text():
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("the gateway did not start")
                time.sleep(0.1)
            served = json.loads(Path(info.name).read_text())
            run(served["port"], served["key"], args.n)
        finally:
            child.stdin.close()
            child.wait(30)


def run(port: int, key: str, n: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    cases = {}
    for name, (path, body) in CASES.items():
        for stream in (False, True):
            cases[f"{name}{' stream' if stream else ''}"] = (path, json.dumps({**body, "stream": stream}).encode())
    times: dict[str, list[float]] = {name: [] for name in cases}
    for name, (path, body) in cases.items():  # warm-up: tokenizer, caches, connection
        for _ in range(50):
            one(conn, path, body, headers)
    for _ in range(n):
        for name, (path, body) in cases.items():  # taking turns: drift hits every case alike
            times[name].append(one(conn, path, body, headers))
    print(f"c=1, {n} requests per case; latency in ms (median / p99), and median minus chat's")
    for name, samples in times.items():
        samples.sort()
        median, p99 = statistics.median(samples) * 1000, samples[int(len(samples) * 0.99) - 1] * 1000
        base = statistics.median(times["chat stream" if "stream" in name else "chat"]) * 1000
        print(f"  {name:18s} {median:7.3f} / {p99:7.3f}   {median - base:+7.3f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        main()
