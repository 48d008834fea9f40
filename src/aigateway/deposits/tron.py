"""TRON addresses, BIP44 derivation from an account-level xpub, and TRC-20 Transfer logs.

An address is base58check over 21 bytes: the version byte 0x41 then the 20-byte
account id (encoded and checked with bip-utils' TRON address codec). Logs returned
by gettransactioninfobyid name contracts by the 20 bytes alone, in hex, and carry
recipients as 32-byte topics.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

TRON_VERSION = 0x41
# keccak256("Transfer(address,address,uint256)")
TRANSFER_TOPIC = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
MAX_INDEX = 2**31 - 1  # non-hardened child indexes


class AddressError(ValueError):
    pass


def address_to_bytes(address: str) -> bytes:
    """The 20-byte account id of a base58check TRON address; raises AddressError."""
    from bip_utils import TrxAddrDecoder

    if not isinstance(address, str) or not 30 <= len(address) <= 40:
        raise AddressError(f"not a TRON address: {address!r}")
    try:  # base58check, 21 bytes, version byte 0x41
        return TrxAddrDecoder.DecodeAddr(address)
    except ValueError as exc:
        raise AddressError(f"not a TRON address (base58check of 0x41 + 20 bytes; {exc}): {address!r}") from None


def is_valid_address(address: str) -> bool:
    try:
        address_to_bytes(address)
    except AddressError:
        return False
    return True


def address_from_bytes(account_id: bytes) -> str:
    if len(account_id) != 20:
        raise AddressError("a TRON account id has 20 bytes")
    from bip_utils import Base58Encoder

    return Base58Encoder.CheckEncode(bytes([TRON_VERSION]) + account_id)


def address_hex(address: str) -> str:
    """The 40 hex digits (no 41 prefix) logs use for this address."""
    return address_to_bytes(address).hex()


def address_from_hex(hex_str: str) -> str:
    """Base58 address from 40 hex digits, '41' + 40, or a 32-byte topic (last 20 bytes)."""
    h = _strip0x(hex_str)
    if len(h) == 42 and h.startswith("41"):
        h = h[2:]
    elif len(h) == 64:
        h = h[24:]
    if len(h) != 40:
        raise AddressError(f"not a hex account id: {hex_str!r}")
    return address_from_bytes(bytes.fromhex(h))


def _strip0x(value: str) -> str:
    value = value.strip().lower()
    return value[2:] if value.startswith("0x") else value


# -- derivation ---------------------------------------------------------------------------


class XpubError(ValueError):
    pass


@lru_cache(maxsize=8)
def _account_node(xpub: str):
    from bip_utils import Bip44, Bip44Coins, Bip44Levels

    if not isinstance(xpub, str) or not xpub.startswith("xpub"):
        if isinstance(xpub, str) and xpub.startswith(("xprv", "tprv", "yprv", "zprv")):
            raise XpubError("this is an extended PRIVATE key: never give the gateway a private key; "
                            "export the account's extended public key (xpub...) instead")
        raise XpubError("the deposit key must be an account-level extended public key starting with 'xpub'")
    try:
        node = Bip44.FromExtendedKey(xpub, Bip44Coins.TRON)
    except Exception:  # bip_utils raises several types; their text may quote the key: never echo it
        raise XpubError("not a valid extended public key (wrong length, characters or checksum)") from None
    if not node.IsPublicOnly():
        raise XpubError("the extended key carries a private key; use the xpub")
    if not node.IsLevel(Bip44Levels.ACCOUNT):
        raise XpubError("the xpub must be the ACCOUNT-level key (path m/44'/195'/0'), depth 3; "
                        f"this one has depth {node.Bip32Object().Depth().ToInt()}")
    return node


def validate_xpub(xpub: str) -> str:
    _account_node(xpub)
    return xpub


def xpub_fingerprint(xpub: str) -> str:
    """A short, non-secret tag of the xpub, stored with each address to notice a changed key."""
    return hashlib.sha256(xpub.encode()).hexdigest()[:16]


def derive_address(xpub: str, index: int) -> str:
    """Address m/44'/195'/0'/0/index from the account xpub (external chain)."""
    from bip_utils import Bip44Changes

    if not 0 <= index <= MAX_INDEX:
        raise XpubError(f"address index out of range: {index}")
    node = _account_node(xpub).Change(Bip44Changes.CHAIN_EXT).AddressIndex(index)
    address = node.PublicKey().ToAddress()
    address_to_bytes(address)  # belt and braces: never hand out a malformed address
    return address


# -- Transfer logs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transfer:
    log_index: int
    contract_hex: str  # 40 hex, no 41 prefix
    from_hex: str
    to_hex: str
    value: int


class LogShapeError(ValueError):
    """A log that does not have the shape of a TRC-20 Transfer event."""


def parse_transfer(index: int, log: dict) -> Transfer | None:
    """A Transfer event from one log entry; None when the log is another event."""
    if not isinstance(log, dict):
        raise LogShapeError("log entry is not an object")
    topics = log.get("topics")
    if not isinstance(topics, list) or not topics or not isinstance(topics[0], str):
        return None
    if _strip0x(topics[0]) != TRANSFER_TOPIC:
        return None
    if len(topics) != 3 or not all(isinstance(t, str) for t in topics):
        return None  # e.g. an ERC-721 style Transfer with an indexed token id
    contract = log.get("address")
    data = log.get("data")
    if not isinstance(contract, str) or not isinstance(data, str):
        raise LogShapeError("Transfer log without address or data")
    contract = _strip0x(contract)
    if len(contract) == 42 and contract.startswith("41"):
        contract = contract[2:]
    from_t, to_t, data = _strip0x(topics[1]), _strip0x(topics[2]), _strip0x(data)
    try:
        if len(contract) != 40 or len(from_t) != 64 or len(to_t) != 64 or len(data) != 64:
            raise ValueError
        bytes.fromhex(contract + from_t + to_t)
        value = int(data, 16)
    except ValueError as exc:
        raise LogShapeError("Transfer log with malformed hex") from exc
    return Transfer(index, contract, from_t[24:], to_t[24:], value)
