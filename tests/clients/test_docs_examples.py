"""The portal's Responses and Anthropic examples (curl, Python, Node) work as pasted: only the
key is replaced. The page names the first served chat model, here the fake upstream's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.clients.fake_upstream import TEXT_PIECES
from tests.conftest import service_missing
from tests.portal.conftest import PortalClient
from tests.portal.test_pages import code_blocks

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
HEADS = {  # the first line of each example -> how it runs
    "# Responses API": "bash", "# pip install openai  (Responses API)": "python",
    "// npm install openai  (Responses API)": "node",
    "# Anthropic Messages API": "bash", "# pip install anthropic": "python",
    "// npm install @anthropic-ai/sdk": "node",
}


def _run(kind: str, code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    if kind == "bash":
        return subprocess.run(["bash", "-c", code.replace("curl ", "curl -sS --fail-with-body ", 1)],
                              capture_output=True, text=True, timeout=60)
    if kind == "python":
        script = tmp_path / "example.py"
        script.write_text(code)
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    script = NODE_DIR / f".example-{tmp_path.name}.mjs"  # inside tests/node to resolve the packages
    script.write_text(code)
    try:
        return subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    finally:
        script.unlink()


def test_translated_route_examples_run_as_pasted(clients_gateway, tmp_path):
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@anthropic-ai").exists():
        service_missing("node with tests/node's packages (scripts/test installs them)")
    if shutil.which("curl") is None:
        service_missing("curl")
    _, key = clients_gateway.customer("docs@example.com")
    blocks = code_blocks(PortalClient(clients_gateway).get("/docs").text)
    for head, kind in HEADS.items():
        [block] = [b for b in blocks if b.startswith(head + "\n")]
        assert '"fake-chat"' in block, head
        result = _run(kind, block.replace("YOUR_API_KEY", key), tmp_path)
        assert result.returncode == 0, (head, result.stdout + result.stderr)
        # the curl example prints the answer once; the SDK ones print it, then stream it
        assert result.stdout.count("".join(TEXT_PIECES)) == (1 if kind == "bash" else 2), (head, result.stdout)
