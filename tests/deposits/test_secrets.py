"""A private key (or a broken xpub) in [deposits] is refused with ONE line that shows no part of it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from aigateway.cli import main
from tests.deposits.conftest import XPUB, account_node
from tests.deposits.test_review import _config_file

XPRV = account_node().PrivateKey().ToExtended()


def _pieces(secret: str, size: int = 6) -> set[str]:
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


@pytest.mark.parametrize("command", [("serve",), ("admin", "deposits", "status")])
@pytest.mark.parametrize("key, why", [
    (XPRV, "PRIVATE key"),
    (XPUB[:-7] + "1111111", "not a valid extended public key"),  # a broken checksum
    ("xpub" + XPRV[4:], "not a valid extended public key"),  # a private key relabelled
])
def test_a_bad_key_prints_one_line_without_the_key(tmp_path, tron, monkeypatch, command, key, why):
    monkeypatch.delenv("AIGATEWAY_DATABASE_URL", raising=False)
    config = _config_file(tmp_path, tron, xpub=key)
    result = CliRunner().invoke(main, ["--config", str(config), *command])
    assert result.exit_code != 0
    out = result.output.strip()
    assert len(out.splitlines()) == 1, out
    assert why in out and "xpub" in out and "Traceback" not in out
    assert not any(piece in out for piece in _pieces(key)), out
    assert not any(piece in out for piece in _pieces(XPRV[4:])), out
