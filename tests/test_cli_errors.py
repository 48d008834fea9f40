"""Every CLI error is one readable line that says what to do, never a traceback."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from aigateway.cli import main
from tests.support.servers import free_port

BIN = Path(sys.executable).with_name("aigateway")


def run(tmp_path, *args, config: str = ""):
    path = tmp_path / "aigateway.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/cli.db"\n' + config)
    return CliRunner().invoke(main, ["--config", str(path), *args], catch_exceptions=False)


def one_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_bad_input_and_unknown_customer_are_one_line(tmp_path):
    assert "e.g. 25 or 12.5" in one_line(run(tmp_path, "admin", "credit", "--customer", "1",
                                               "--amount", "lots"))  # was a traceback
    assert "no customer" in one_line(run(tmp_path, "admin", "balance", "--customer", "nobody@example.com"))
    assert "not a valid email" in one_line(run(tmp_path, "admin", "customer", "create", "--email", "x"))


def test_an_unreachable_database_is_one_line_naming_the_setting(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "pg.toml"
    path.write_text(f'[database]\nurl = "postgresql+asyncpg://postgres:s3cret@127.0.0.1:{port}/nothing"\n')
    result = CliRunner().invoke(main, ["--config", str(path), "admin", "customer", "list"], catch_exceptions=False)
    line = one_line(result)
    assert "AIGATEWAY_DATABASE_URL" in line or "[database] url" in line
    assert "s3cret" not in result.output


def test_a_busy_port_is_one_line_that_says_how_to_choose_another(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "aigateway.toml").write_text(
            f'[server]\nport = {port}\n[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/busy.db"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIGATEWAY_")}
        result = subprocess.run([str(BIN), "serve"], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: port {port} on 127.0.0.1 is already in use: stop what uses it, or choose another "
                      "with `aigateway serve --port N` (or AIGATEWAY_PORT=N)"], result.stderr
    assert "Traceback" not in result.stderr


def test_free_port_helper_is_real():
    """A port below the ephemeral range (where outgoing connections cannot take it), bindable."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(10_000 <= p < low for p in ports) and len(ports) > 1
    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
