"""Addresses, derivation from the account xpub, Transfer logs, and the config section."""

import hashlib

import pytest
from bip_utils import Bip44Changes
from pydantic import ValidationError

from aigateway.deposits.config import DepositsConfig
from aigateway.deposits.tron import (
    TRANSFER_TOPIC,
    AddressError,
    XpubError,
    address_from_hex,
    address_hex,
    address_to_bytes,
    derive_address,
    is_valid_address,
    parse_transfer,
    validate_xpub,
)
from tests.deposits.conftest import VECTORS, XPUB, account_node, deposits_section


def _b58check(payload: bytes) -> str:
    from bip_utils import Base58Encoder

    return Base58Encoder.Encode(payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4])


def test_derivation_matches_the_bip44_tron_vectors():
    assert [derive_address(XPUB, i) for i in range(3)] == VECTORS


def test_only_an_account_level_public_key_is_accepted():
    node = account_node()
    with pytest.raises(XpubError, match="PRIVATE"):
        validate_xpub(node.PrivateKey().ToExtended())
    change_level = node.Change(Bip44Changes.CHAIN_EXT).PublicKey().ToExtended()  # depth 4: wrong level
    with pytest.raises(XpubError, match="ACCOUNT-level"):
        validate_xpub(change_level)
    with pytest.raises(XpubError):
        validate_xpub("xpub-not-a-key")
    with pytest.raises(ValidationError, match="PRIVATE"):
        DepositsConfig.model_validate(deposits_section("http://127.0.0.1:9", xpub=node.PrivateKey().ToExtended()))


def test_address_validation_checks_checksum_and_version_byte():
    for address in VECTORS + ["TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"]:
        assert is_valid_address(address)
        assert address_from_hex(address_hex(address)) == address
        assert address_from_hex("41" + address_hex(address)) == address
        assert address_from_hex("0" * 24 + address_hex(address)) == address
    good = VECTORS[0]
    assert not is_valid_address(good[:-1] + ("a" if good[-1] != "a" else "b"))  # checksum
    account = address_to_bytes(good)
    assert not is_valid_address(_b58check(b"\x00" + account))  # valid checksum, version 0x00
    assert not is_valid_address(_b58check(b"\x41" + account[:19]))  # too short
    assert not is_valid_address("T0OIl" + good[5:])  # not base58
    assert not is_valid_address("")
    with pytest.raises(AddressError, match="0x41"):
        address_to_bytes(_b58check(b"\xa0" + account))


def test_parse_transfer_reads_the_log_shape():
    to_hex = address_hex(VECTORS[1])
    entry = {"address": "a614f803b6fd780986a42c78ec9c7f77e6ded13c",
             "topics": [TRANSFER_TOPIC, "0" * 24 + "11" * 20, "0" * 24 + to_hex],
             "data": format(12_500_000, "064x")}
    t = parse_transfer(3, entry)
    assert (t.log_index, t.contract_hex, t.to_hex, t.value) == (3, entry["address"], to_hex, 12_500_000)
    approval_topic = "8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
    approval = dict(entry, topics=[approval_topic] + entry["topics"][1:])
    assert parse_transfer(0, approval) is None


def test_config_defaults_and_refusals():
    cfg = DepositsConfig.model_validate({"xpub": XPUB, "rate": "3.50"})
    assert cfg.network == "mainnet" and cfg.usdt_contract == "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
    assert cfg.base_url.startswith("https://api.")
    nile = DepositsConfig.model_validate({"xpub": XPUB, "rate": "3.5", "network": "nile"})
    assert nile.usdt_contract != cfg.usdt_contract and "nile" in nile.base_url
    own = DepositsConfig.model_validate({"xpub": XPUB, "rate": "3.5", "network": "shasta",
                                         "usdt_contracts": {"shasta": VECTORS[0]}})
    assert own.usdt_contract == VECTORS[0]
    for bad in ({"rate": "0"}, {"rate": 3.5}, {"rate": "abc"}, {"spread": "1"}, {"spread": "-0.1"},
                {"min_deposit": "0"}, {"min_deposit": "0.0000001"}, {"network": "testnet"},
                {"usdt_contracts": {"mainnet": "Tnotanaddress"}}, {"api_url": "ftp://x"}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            DepositsConfig.model_validate({"xpub": XPUB, "rate": "3.5", **bad})
