"""Reading and parsing a request body so that no input can end in a 500.

Each hazard gets a clear 4xx before the call goes further:
- a declared Content-Length over the limit: 413 at once, before reading a byte;
- a Content-Encoding aiohttp would not decode: 415 (it would otherwise pass the
  compressed bytes on as if they were the body); a body that does not decode: 400;
- a body cut short or with a broken chunked encoding: 400;
- JSON nested deeper than orjson can write back (255 levels; orjson reads up to
  1024), which would fail only when the body is re-serialised for the upstream: 400.
  The check costs nothing for ordinary bodies: only a body holding at least
  MAX_JSON_DEPTH brackets can be that deep, and only then is it test-serialised.
"""

from __future__ import annotations

import orjson
from aiohttp import web
from aiohttp.compression_utils import HAS_BROTLI
from aiohttp.web_protocol import RequestPayloadError

from aigateway.api import errors

try:
    from aiohttp.compression_utils import HAS_ZSTD
except ImportError:  # aiohttp < 3.12
    HAS_ZSTD = False

MAX_JSON_DEPTH = 254  # orjson.dumps refuses 255 levels and more

SUPPORTED_ENCODINGS = ["identity", "gzip", "deflate"] + (["br"] if HAS_BROTLI else []) + (
    ["zstd"] if HAS_ZSTD else [])


async def read_body(request: web.Request) -> bytes:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding and encoding not in SUPPORTED_ENCODINGS:
        raise errors.unsupported_encoding(encoding, SUPPORTED_ENCODINGS)
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise errors.request_too_large(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.request_too_large(limit) from None
    except RequestPayloadError as exc:
        if encoding and encoding != "identity" and "content-encoding" in str(exc).lower():
            raise errors.undecodable_body(encoding) from None
        raise errors.incomplete_body() from None


def check_depth(raw: bytes, body: object) -> None:
    """400 for JSON too deep to be written back for the upstream."""
    if raw.count(b"[") + raw.count(b"{") < MAX_JSON_DEPTH:
        return
    try:
        orjson.dumps(body)
    except orjson.JSONEncodeError:
        raise errors.body_too_deep(MAX_JSON_DEPTH) from None
