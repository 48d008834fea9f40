"""The operator's commands: exchange rate, hand prices, free, list, history, held/confirm/reject, fetch now."""

import re

from click.testing import CliRunner

from aigateway.cli import main
from tests.pricing.conftest import LL_PATH, OR_PATH


def write_config(tmp_path, source_url: str) -> str:
    path = tmp_path / "aigateway.toml"
    path.write_text(f"""
[database]
url = "sqlite+aiosqlite:///{tmp_path}/cli.db"

[providers.up]
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "or-chat"
price_source = "or"
price_source_model = "vendor/chat"
routes = [{{provider = "up", model = "x"}}]

[[models]]
name = "ll-embed"
type = "embedding"
price_source = "ll"
price_source_model = "ll-embed-up"
routes = [{{provider = "up", model = "x"}}]

[[models]]
name = "hand"
routes = [{{provider = "up", model = "x"}}]

[pricing]
markup = "0.20"
max_change_factor = "3"

[pricing.sources.or]
format = "openrouter"
url = "{source_url}{OR_PATH}"
timeout = 2

[pricing.sources.ll]
format = "litellm"
url = "{source_url}{LL_PATH}"
""")
    return str(path)


def test_operator_commands(tmp_path, source):
    config = write_config(tmp_path, source.url)
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(main, ["--config", config, "admin", *args])
        assert result.exit_code == code, result.output
        return result.output

    # no rate yet: a fetch refuses to guess one
    assert "no USD->TMT rate is set" in run("price", "fetch", code=1)
    assert "no USD rate set" in run("fx", "show")
    run("fx", "set", "USD", "3.50", "--note", "central bank")
    assert "(unchanged)" in run("fx", "set", "USD", "3.50")
    assert re.search(r"USD\s+3.50 TMT\s+manual\s+in force\s+central bank", run("fx", "show"))

    out = run("price", "fetch")
    assert "or-chat: applied 10.500000/42.000000" in out and "ll-embed: applied 0.084000/0.000000" in out
    listing = run("price", "list")
    assert re.search(r"or-chat\s+chat\s+10.500000\s+42.000000\s+\d+\s+or\s", listing)
    assert re.search(r"hand\s+chat\s+NOT PRICED", listing)
    assert "USD->TMT rate: 3.50 (manual" in listing and "source or: last fetch" in listing

    # a x10 jump is held; the operator sees and confirms it
    source.or_model("vendor/chat")["pricing"]["prompt"] = "0.000025"
    out = run("price", "fetch")
    held_id = re.search(r"or-chat: held 105.000000/42.000000 \(version (\d+)\)", out).group(1)
    assert re.search(rf"{held_id}\s+or-chat\s+10.500000/42.000000 -> 105.000000/42.000000", run("price", "held"))
    assert "waiting for the operator" in run("price", "fetch")
    assert "now in force" in run("price", "confirm", held_id)
    assert "not held" in run("price", "confirm", held_id, code=1)
    history = run("price", "history", "or-chat")
    assert re.search(rf"{held_id} .* applied\s+or\s+10.500000/42.000000 -> 105.000000/42.000000\s+"
                     r"\[USD/token 0.000025/0.00001 x 3.50 x \(1\+0.20\)\]", history)

    # another jump, rejected: not proposed again
    source.or_model("vendor/chat")["pricing"]["prompt"] = "0.000001"
    rejected = re.search(r"or-chat: held .* \(version (\d+)\)", run("price", "fetch")).group(1)
    assert "rejected" in run("price", "reject", rejected)
    assert "rejected by the operator" in run("price", "fetch")
    assert "no held price changes" in run("price", "held")

    # a model gone from its source and a broken source are reported, prices kept
    source.docs[LL_PATH].pop("ll-embed-up")
    source.raw[OR_PATH] = (200, b"garbage")
    out = run("price", "fetch", code=1)
    assert "source or: FAILED: response is not valid JSON" in out and "ll-embed: missing" in out
    status = run("price", "status")
    assert "FAILED" in status and "ll-embed: missing in the source (ll-embed-up); last price kept" in status

    # hand prices and free
    assert "version" in run("price", "set", "hand", "--input", "0.35", "--output", "1.40")
    assert "more than 6 decimal places" in run("price", "set", "hand", "--input", "0.1234567", "--output", "1",
                                               code=1)
    assert "embedding model" in run("price", "set", "ll-embed", "--input", "1", "--output", "2", code=1)
    assert "free (version" in run("price", "free", "hand")
    assert "already free" in run("price", "free", "hand")
    assert re.search(r"hand\s+chat\s+free\s+free", run("price", "list"))
    assert re.search(r"applied\s+manual\s+0.350000/1.400000 -> free", run("price", "history", "hand"))
    assert "follows price source" in runner.invoke(
        main, ["--config", config, "admin", "price", "set", "or-chat", "--input", "1", "--output", "2"]).output
