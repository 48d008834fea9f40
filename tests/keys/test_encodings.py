"""Embeddings come back in the encoding the client asked for, whatever the upstream answered."""

import base64
import struct
import urllib.request

import openai
import orjson
import pytest

from aigateway.api.encodings import as_requested, base64_to_floats, floats_to_base64
from aigateway.config import ModelConfig
from aigateway.demo.mock_upstream import _vector
from aigateway.providers.upstream import UnexpectedAnswer
from tests.conftest import gateway_config


def float32(values):
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


@pytest.fixture
def gw(start_gateway, mock_upstream, sqlite_url):
    config = gateway_config(mock_upstream.url, sqlite_url)
    for name, upstream in (("embed-floats", "mock-embed-floats"), ("embed-b64", "mock-embed-b64")):
        config.models.append(ModelConfig(name=name, type="embedding", input_price="0.02",
                                         routes=[{"provider": "mock", "model": upstream}]))
    return start_gateway(config)


@pytest.mark.parametrize("model", ["nomic-embed-text", "embed-floats", "embed-b64"])
def test_sdk_default_base64_gets_16_floats_from_any_upstream(gw, model):
    _, key = gw.customer(f"{model}@example.com")
    sdk = openai.OpenAI(api_key=key, base_url=gw.base_url, max_retries=0)
    result = sdk.embeddings.create(model=model, input=["First text", "Second text"])  # SDK asks base64
    assert [len(d.embedding) for d in result.data] == [16, 16]
    assert result.data[1].embedding == float32(_vector("Second text", 16))
    as_floats = sdk.embeddings.create(model=model, input="Text", encoding_format="float")
    assert as_floats.data[0].embedding == pytest.approx(_vector("Text", 16), rel=1e-6)


@pytest.mark.parametrize("model, asked", [("embed-floats", "base64"), ("embed-b64", "float"),
                                          ("embed-b64", None), ("nomic-embed-text", "base64")])
def test_wire_format_is_what_was_asked(gw, model, asked):
    _, key = gw.customer(f"wire-{model}-{asked}@example.com")
    body = {"model": model, "input": "Text"} | ({"encoding_format": asked} if asked else {})
    request = urllib.request.Request(gw.base_url + "/embeddings", data=orjson.dumps(body),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        answer = orjson.loads(response.read())
    vector = answer["data"][0]["embedding"]
    if asked == "base64":
        assert isinstance(vector, str)
        assert list(struct.unpack("<16f", base64.b64decode(vector))) == float32(_vector("Text", 16))
    else:
        assert vector == float32(_vector("Text", 16))  # decoded from the upstream's float32 bytes
    assert answer["model"] == model


def test_conversion_round_trip_and_bad_base64_is_a_route_failure():
    values = [0.5, -1.25, 3.0e-8, 1234.5]
    assert base64_to_floats(floats_to_base64(values)) == float32(values)
    raw = b'{"data":[{"embedding":[1.0]}]}'
    assert as_requested("float", {"data": [{"embedding": [1.0]}]}, raw) is raw  # already right: untouched
    with pytest.raises(UnexpectedAnswer):
        as_requested("float", {"data": [{"embedding": "AAA"}]}, b"")
    with pytest.raises(UnexpectedAnswer):
        as_requested("base64", {"data": [{"embedding": ["x"]}]}, b"")


@pytest.mark.parametrize("package", ["openai", "openai6"])
def test_node_sdks_get_16_floats_from_a_float_only_upstream(gw, package):
    import shutil
    import subprocess
    from pathlib import Path

    from tests.conftest import service_missing

    node_dir = Path(__file__).resolve().parents[1] / "node"
    if shutil.which("node") is None or not (node_dir / "node_modules" / package).exists():
        service_missing(f"node with the {package} package in tests/node (scripts/test installs it)")
    _, key = gw.customer(f"node-{package}@example.com")
    script = node_dir / f".embed-floats-{package}.mjs"
    script.write_text(f'import OpenAI from "{package}";\n'
                      f'const client = new OpenAI({{ apiKey: "{key}", baseURL: "{gw.base_url}", maxRetries: 0 }});\n'
                      'const r = await client.embeddings.create({ model: "embed-floats", input: "Text" });\n'
                      'console.log(JSON.stringify(Array.from(r.data[0].embedding)));\n')
    try:
        result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    finally:
        script.unlink()
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == float32(_vector("Text", 16))
