"""Node clients against the gateway: the Vercel AI SDK's default `openai(model)` provider, which
speaks /v1/responses (generateText and streamText, plain and with a tool, a two-step tool loop)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from aigateway.money import request_cost
from tests.clients.conftest import IN, OUT
from tests.clients.fake_upstream import TEXT_PIECES, TEXT_USAGE, TOOL_USAGE
from tests.conftest import service_missing

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE.parent / "node"


def test_vercel_ai_sdk_default_provider(clients_gateway, tmp_path):
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "ai").exists():
        service_missing("node with tests/node's packages (scripts/test installs them)")
    cid, key = clients_gateway.customer("vercel@example.com")
    script = NODE_DIR / f".vercel-{tmp_path.name}.mjs"  # inside tests/node to resolve the packages
    shutil.copy(HERE / "vercel_ai.mjs", script)
    try:
        env = {**os.environ, "GW_KEY": key, "GW_BASE": clients_gateway.base_url, "GW_MODEL": "fake-chat"}
        result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=90, env=env)
    finally:
        script.unlink()
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["paths"] == ["/v1/responses"]
    hello = "".join(TEXT_PIECES)
    assert out["plain"]["text"] == hello
    assert (out["plain"]["usage"]["inputTokens"], out["plain"]["usage"]["outputTokens"]) == (19, 7)
    assert out["called"] == {"calls": [["get_weather", {"city": "Paris"}]], "results": ["22 C in Paris"]}
    streamed = out["streamed"]
    assert streamed["calls"] == [["get_weather", {"city": "Paris"}]] and streamed["results"] == ["22 C in Paris"]
    assert "tool-input-delta" in streamed["parts"] and streamed["parts"][-1] == "finish"
    assert streamed["usage"]["inputTokens"] == TOOL_USAGE["prompt_tokens"]
    assert out["streamedText"]["text"] == hello and out["streamedText"]["usage"]["outputTokens"] == 7
    assert out["loop"] == {"text": "It is sunny: 22 C in Paris", "steps": 2}
    # 2 plain (19 + 7 tokens) and 4 tool-shaped answers (41 + 13): the ledger charge to the unit
    expected = 2 * request_cost(TEXT_USAGE["prompt_tokens"], TEXT_USAGE["completion_tokens"], IN, OUT) \
        + 4 * request_cost(TOOL_USAGE["prompt_tokens"], TOOL_USAGE["completion_tokens"], IN, OUT)
    assert 10_000_000 - clients_gateway.balance(cid) == expected
