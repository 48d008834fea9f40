"""Embeddings in the encoding the client asked for, whatever the upstream answered.

Both official SDKs ask for `encoding_format: "base64"` by default and decode the string
themselves; an upstream that ignores the field answers float arrays, which the Node SDK 6.x
then decodes as base64 into garbage (a 16-float vector became 4 numbers). So the answer is
converted to what was asked: base64 of float32 little-endian (OpenAI's format) when the client
asked for "base64", JSON floats when it asked for "float" or nothing (the API's default).

Invariant: an answer that already matches is passed on byte for byte (no re-serialising);
an embedding that cannot be converted (a base64 string that is not whole float32s) is
`UnexpectedAnswer`, a route failure, never a garbled vector sent to the client.
"""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from typing import Any

import orjson

from aigateway.providers.upstream import UnexpectedAnswer

_SWAP = sys.byteorder != "little"  # array('f') is native-endian; the wire format is little-endian


def floats_to_base64(vector: list[Any]) -> str:
    packed = array("f", vector)
    if _SWAP:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def base64_to_floats(text: str) -> list[float]:
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes is not a whole number of float32s")
    packed = array("f")
    packed.frombytes(raw)
    if _SWAP:
        packed.byteswap()
    return packed.tolist()


def as_requested(encoding_format: object, payload: dict[str, Any], raw: bytes) -> bytes:
    """The embedding answer `raw` (parsed: `payload`) in the encoding the client asked for."""
    if encoding_format not in (None, "float", "base64"):
        return raw  # a value the API does not define: the upstream judged it
    want_base64 = encoding_format == "base64"
    changed = False
    try:
        for item in payload["data"]:
            vector = item.get("embedding") if isinstance(item, dict) else None
            if want_base64 and isinstance(vector, list):
                item["embedding"] = floats_to_base64(vector)
                changed = True
            elif not want_base64 and isinstance(vector, str):
                item["embedding"] = base64_to_floats(vector)
                changed = True
    except (TypeError, ValueError, OverflowError, binascii.Error) as exc:
        raise UnexpectedAnswer(f"answered an embedding that is not a float32 vector: {exc}") from None
    return orjson.dumps(payload) if changed else raw
