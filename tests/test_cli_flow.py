"""The README's operator flow with the real `aigateway` command: demo server, customer, credit, key, SDK."""

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.support.servers import free_port
from tests.support.waits import wait_until

BIN = Path(sys.executable).with_name("aigateway")


def aigateway(*args, cwd, env):
    result = subprocess.run([str(BIN), "--demo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def demo_server(tmp_path):
    port = free_port()
    busy = socket.socket()  # the configured mock port is taken: the demo picks another and says so
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    mock_port = busy.getsockname()[1]
    start_dir, other_dir = tmp_path / "start", tmp_path / "elsewhere"
    start_dir.mkdir()
    other_dir.mkdir()
    (start_dir / "aigateway.toml").write_text(f"[server]\nport = {port}\ndemo_port = {mock_port}\n")
    (other_dir / "aigateway.toml").write_text(f"[server]\nport = {port}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGATEWAY_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")  # the demo's files live in the per-user data folder
    process = subprocess.Popen([str(BIN), "serve", "--demo"], cwd=start_dir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def healthy() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return True
        except OSError:
            assert process.poll() is None, "demo server exited"
            return False

    wait_until(healthy, timeout=30, interval=0.1, what="demo server started")
    yield port, tmp_path, other_dir, env
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=20)
    busy.close()
    assert "DEMO MODE" in output and "MOCK upstream" in output
    assert f"demo: port {mock_port} is busy; the mock upstream uses port" in output
    # The welcome key printed at first start works too.
    [demo_key] = [w for w in output.split() if w.startswith("gw_") and len(w) > 40][:1]
    assert demo_key


def test_operator_flow_with_the_cli(demo_server):
    port, tmp_path, cwd, env = demo_server
    # demo data stays out of a real database, in one place whatever the working directory
    assert (tmp_path / "data" / "aigateway" / "demo" / "aigateway-demo.db").exists()
    assert not list((tmp_path / "start").glob("*.db")) and not list(cwd.glob("*.db"))
    assert "demo@example.com" in aigateway("admin", "customer", "list", cwd=cwd, env=env)  # run elsewhere
    customer_id = aigateway("admin", "customer", "create", "--email", "ada@example.com", cwd=cwd, env=env)
    assert "applied" in aigateway("admin", "credit", "--customer", "ada@example.com", "--amount", "2.5",
                                  "--reference", "invoice-1", cwd=cwd, env=env)
    again = aigateway("admin", "credit", "--customer", customer_id, "--amount", "2.5", "--reference", "invoice-1",
                      cwd=cwd, env=env)
    assert "nothing changed" in again
    key = aigateway("admin", "key", "create", "--customer", customer_id, "--name", "laptop", cwd=cwd, env=env)
    assert key.startswith("gw_") and len(key) >= 46

    client = openai.OpenAI(api_key=key, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    reply = client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "Hi"}])
    cost = -(-(reply.usage.prompt_tokens * 1_000_000 + reply.usage.completion_tokens * 2_000_000) // 1_000_000)
    expected = f"{(2_500_000 - cost) / 1_000_000:.6f}"

    def charged() -> str | None:  # the group commit writes the charge within a flush interval
        line = aigateway("admin", "balance", "--customer", customer_id, cwd=cwd, env=env)
        return line if expected in line else None

    balance = wait_until(charged, what="charge committed")
    assert balance == f"balance {expected} TMT (ledger sum {expected} TMT)"

    header, *rows = aigateway("admin", "key", "list", "--customer", customer_id, cwd=cwd, env=env).splitlines()
    assert header.split() == ["id", "key", "name", "state"]
    [key_id] = [line.split()[0] for line in rows]
    aigateway("admin", "key", "revoke", key_id, cwd=cwd, env=env)

    def refused() -> bool:
        try:
            client.models.list()
        except openai.AuthenticationError:
            return True
        return False

    wait_until(refused, timeout=5, interval=0.1, what="revoked key refused")  # the key cache refreshes each ~1 s
