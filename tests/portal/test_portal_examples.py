"""The portal's own curl, Python and Node examples run unchanged against the gateway,
with only the base URL and the key replaced (shared/spec/portal-text.txt)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
# The spec sits beside the main checkout (../shared); a worktree under ../wt/ finds it one level higher.
SPEC = next((p for p in (ROOT.parent / "shared" / "spec" / "portal-text.txt",
                         ROOT.parent.parent / "shared" / "spec" / "portal-text.txt") if p.exists()),
            ROOT.parent / "shared" / "spec" / "portal-text.txt")
NODE_DIR = ROOT / "tests" / "node"


def spec_text() -> str:
    if not SPEC.exists():
        service_missing(f"the portal spec at {SPEC}")
    return SPEC.read_text()


def between(text: str, start: str, end: str, occurrence: int = 0) -> str:
    at = -1
    for _ in range(occurrence + 1):
        at = text.index(start, at + 1)
    return text[at: text.index(end, at)]


def fill(snippet: str, gateway, key: str) -> str:
    return (snippet.replace('"/v1"', f'"{gateway.base_url}"')
            .replace(" /v1/", f" {gateway.base_url}/")
            .replace("YOUR_API_KEY", key))


@pytest.fixture
def examples_gateway(gateway):
    _, key = gateway.customer("examples@example.com", credit="10")
    return gateway, key


def test_python_examples_run_unchanged(examples_gateway, tmp_path):
    gateway, key = examples_gateway
    text = spec_text()
    for i, expect in ((0, "Hello!"), (1, "Vector length: 16")):
        code = fill(between(text, "# pip install openai", "// npm install openai", i), gateway, key)
        script = tmp_path / f"example{i}.py"
        script.write_text(code)
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert expect in result.stdout


def test_curl_examples_run_unchanged(examples_gateway):
    gateway, key = examples_gateway
    if shutil.which("curl") is None:
        service_missing("curl")
    text = spec_text()
    blocks = between(text, "# Replace YOUR_API_KEY", "# pip install openai")
    blocks += between(text, "# Single string\ncurl", "# pip install openai")
    blocks += between(text, "curl /v1/models", "Authentication")
    script = fill(blocks, gateway, key)
    commands, current = [], None
    for line in script.splitlines():
        if line.startswith("curl "):
            current = [line]
            commands.append(current)
        elif line.startswith("#") or not line.strip():
            current = None  # a comment or blank line ends the command
        elif current is not None:
            current.append(line)
    commands = ["\n".join(c) for c in commands]
    assert len(commands) == 5
    outputs = []
    for command in commands:
        result = subprocess.run(["bash", "-c", command.replace("curl ", "curl -sS --fail-with-body ", 1)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout)
    assert json.loads(outputs[0])["choices"][0]["message"]["content"].startswith("Hello!")
    assert "data: [DONE]" in outputs[1]
    assert json.loads(outputs[3])["data"][2]["index"] == 2
    assert "llama-3.1-70b" in {m["id"] for m in json.loads(outputs[4])["data"]}


# The Node SDKs the examples run with: the current major, and the newest 6.x (the npm alias
# `openai6`), which is what `npm install openai` gives on Node 20.
@pytest.mark.parametrize("package", ["openai", "openai6"])
def test_node_examples_run_unchanged(examples_gateway, tmp_path, package):
    gateway, key = examples_gateway
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / package).exists():
        service_missing(f"node with the {package} package in tests/node (scripts/test installs it)")
    text = spec_text()
    chat = between(text, "// npm install openai", "Embeddings", 0)
    embed = between(text, "// npm install openai", "Available Models", 1)
    for name, code, expects in (("chat", chat, ["Hello!"]),
                                ("embed", embed, ["Vector length: 16", "[2] len=16"])):
        script = NODE_DIR / f".example-{name}-{package}-{tmp_path.name}.mjs"  # inside tests/node to resolve it
        code = fill(code, gateway, key).replace('baseURL: "/v1"', f'baseURL: "{gateway.base_url}"')
        script.write_text(code.replace('from "openai";', f'from "{package}";'))
        try:
            result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
        finally:
            script.unlink()
        assert result.returncode == 0, result.stderr
        for expect in expects:
            assert expect in result.stdout, result.stdout
