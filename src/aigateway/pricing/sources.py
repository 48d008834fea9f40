"""Upstream price sources: download one, parse it into USD-per-token quotes.

Two formats are understood, each from any URL (so an operator can mirror them):

* ``openrouter``: a model list ``{"data": [{"id", "pricing": {"prompt", "completion"},
  "context_length", "top_provider": {"max_completion_tokens"}}]}`` with prices as
  decimal strings of USD per token; ``"-1"`` means variable (not usable), ``"0"`` free.
  Optional ``pricing`` fields: ``input_cache_read``, ``input_cache_write``,
  ``internal_reasoning`` (USD per token), ``request`` (USD per request) and ``image``
  (USD per input image).
* ``litellm``: a JSON object keyed by model with ``input_cost_per_token``,
  ``output_cost_per_token``, ``max_input_tokens``, ``max_output_tokens`` and ``mode``;
  the ``sample_spec`` entry is documentation and skipped. Optional:
  ``cache_read_input_token_cost``, ``cache_creation_input_token_cost`` (and its
  long-lived ``cache_creation_input_token_cost_above_1hr``),
  ``output_cost_per_reasoning_token``, ``input_cost_per_image`` and the tiers
  ``input_cost_per_token_above_<N>k_tokens`` / ``output_cost_per_token_above_<N>k_tokens``
  / ``cache_read_input_token_cost_above_<N>k_tokens`` (prices above N thousand input tokens).

An optional field that is absent, ``"0"`` or the variable marker means "not priced
apart": the input (or output) price applies to those tokens, no fee is added.

Numbers are parsed as ``Decimal`` straight from the JSON text (never through a
float). A document that is not JSON, has the wrong shape, or holds no usable
price at all is garbage: the whole fetch fails and the last good prices stay.
A single malformed entry is skipped and counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, overload

import aiohttp

from aigateway.money import parse_decimal
from aigateway.pricing.settings import SourceSettings


class SourceError(Exception):
    """The source could not be fetched or its response is garbage."""


@dataclass(frozen=True, slots=True)
class QuoteTier:
    """USD per token for requests whose full input is above `above` tokens."""

    above: int
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    """One model's upstream price. A price is None when the source marks it variable."""

    input: Decimal | None  # USD per token
    output: Decimal | None
    context_length: int | None = None
    max_output_tokens: int | None = None
    mode: str | None = None
    # Optional finer prices, USD per token unless noted; None = not priced apart.
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_long: Decimal | None = None
    reasoning: Decimal | None = None
    request: Decimal | None = None  # USD per request
    image: Decimal | None = None  # USD per input image
    tiers: tuple[QuoteTier, ...] = ()


@dataclass(slots=True)
class Parsed:
    quotes: dict[str, Quote]
    invalid: dict[str, str]  # entry id -> why it was skipped


# Above this (1 USD per token = 1,000,000 USD per 1M tokens) an entry is garbage, not a price.
MAX_USD_PER_TOKEN = Decimal(1)
MAX_COUNT = 2**31 - 1


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number")


def load_json(raw: bytes):
    """JSON with every non-integer number as an exact Decimal; NaN/Infinity refused."""
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"response is not valid JSON: {str(exc)[:200]}") from None


@overload
def _price(value: object, *, variable_marker: Literal[False]) -> Decimal: ...
@overload
def _price(value: object, *, variable_marker: bool) -> Decimal | None: ...


def _price(value: Any, *, variable_marker: bool) -> Decimal | None:
    """USD per token; None for the variable marker "-1". Raises ValueError when malformed."""
    if value is None:
        raise ValueError("missing price")
    # a float only if a caller parsed JSON with floats: read through its shortest text (MoneyError is a ValueError)
    d = parse_decimal(value, "price", floats=True)
    if variable_marker and d == -1:
        return None
    if d < 0:
        raise ValueError(f"negative price {value!r}")
    if d > MAX_USD_PER_TOKEN:
        raise ValueError(f"implausible price {value!r} USD per token")
    return d


def _count(value) -> int | None:
    """A positive token count, or None when absent or not sensible."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and 0 < value <= MAX_COUNT:
        return value
    return None


def _optional(value) -> Decimal | None:
    """An optional price: None when absent, zero or variable. Raises ValueError when malformed."""
    if value is None:
        return None
    d = _price(value, variable_marker=True)
    return d if d else None


def parse_openrouter(doc) -> Parsed:
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise SourceError('not an OpenRouter model list (expected {"data": [...]})')
    quotes: dict[str, Quote] = {}
    invalid: dict[str, str] = {}
    for entry in doc["data"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            invalid[f"#{len(invalid)}"] = "entry without an id"
            continue
        ident = entry["id"]
        pricing = entry.get("pricing")
        try:
            if not isinstance(pricing, dict):
                raise ValueError("no pricing object")
            prompt = _price(pricing.get("prompt"), variable_marker=True)
            completion = pricing.get("completion")
            completion = _price(completion, variable_marker=True) if completion is not None else Decimal(0)
            extra: dict[str, Any] = {name: _optional(pricing.get(field)) for name, field in _OPENROUTER_EXTRA.items()}
        except ValueError as exc:
            invalid[ident] = str(exc)
            continue
        top = entry.get("top_provider")
        if not isinstance(top, dict):
            top = {}
        quotes[ident] = Quote(
            input=prompt, output=completion,
            context_length=_count(entry.get("context_length")) or _count(top.get("context_length")),
            max_output_tokens=_count(top.get("max_completion_tokens")), **extra,
        )
    return Parsed(quotes, invalid)


_OPENROUTER_EXTRA = {"cached_input": "input_cache_read", "cache_write": "input_cache_write",
                     "reasoning": "internal_reasoning", "request": "request", "image": "image"}
_LITELLM_EXTRA = {"cached_input": "cache_read_input_token_cost", "cache_write": "cache_creation_input_token_cost",
                  "cache_write_long": "cache_creation_input_token_cost_above_1hr",
                  "reasoning": "output_cost_per_reasoning_token", "image": "input_cost_per_image"}
_LITELLM_TIER = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")


def _litellm_tiers(entry: dict) -> tuple[QuoteTier, ...]:
    """`*_above_<N>k_tokens` prices as tiers; a tier without its own output price keeps the base one."""
    tiers = []
    for key, value in entry.items():
        match = _LITELLM_TIER.match(key)
        if not match:
            continue
        above = int(match.group(1)) * 1000
        if not 0 < above <= MAX_COUNT:
            raise ValueError(f"implausible tier {key}")
        output = entry.get(f"output_cost_per_token_above_{match.group(1)}k_tokens")
        tiers.append(QuoteTier(
            above=above, input=_price(value, variable_marker=False),
            output=_price(output if output is not None else entry.get("output_cost_per_token", 0),
                          variable_marker=False),
            cached_input=_optional(entry.get(f"cache_read_input_token_cost_above_{match.group(1)}k_tokens"))))
    return tuple(sorted(tiers, key=lambda t: t.above))


def parse_litellm(doc) -> Parsed:
    if not isinstance(doc, dict) or not doc:
        raise SourceError("not a LiteLLM model price map (expected a JSON object keyed by model)")
    quotes, invalid = {}, {}
    for ident, entry in doc.items():
        if ident == "sample_spec":
            continue
        if not isinstance(entry, dict):
            invalid[ident] = "entry is not an object"
            continue
        if "input_cost_per_token" not in entry:
            continue  # priced per image, second, character...: not a token price, not ours to use
        try:
            prompt = _price(entry.get("input_cost_per_token"), variable_marker=False)
            completion = entry.get("output_cost_per_token")
            completion = _price(completion, variable_marker=False) if completion is not None else Decimal(0)
            extra = {name: _optional(entry.get(field)) for name, field in _LITELLM_EXTRA.items()}
            tiers = _litellm_tiers(entry)
        except ValueError as exc:
            invalid[ident] = str(exc)
            continue
        mode = entry.get("mode") if isinstance(entry.get("mode"), str) else None
        quotes[ident] = Quote(
            input=prompt, output=completion, context_length=_count(entry.get("max_input_tokens")),
            max_output_tokens=_count(entry.get("max_output_tokens")), mode=mode, tiers=tiers, **extra,
        )
    return Parsed(quotes, invalid)


PARSERS = {"openrouter": parse_openrouter, "litellm": parse_litellm}


def parse(fmt: str, raw: bytes) -> Parsed:
    parsed = PARSERS[fmt](load_json(raw))
    if not any(q.input is not None for q in parsed.quotes.values()):
        raise SourceError(f"no usable price in the response ({len(parsed.invalid)} malformed entries)")
    return parsed


async def fetch(session: aiohttp.ClientSession, source: SourceSettings) -> Parsed:
    """Download and parse one source. Raises SourceError on any failure (timeouts included)."""
    headers = dict(source.headers)
    if source.api_key_env and (token := os.environ.get(source.api_key_env)):
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with asyncio.timeout(source.timeout):
            async with session.get(source.url, headers=headers) as resp:
                if resp.status != 200:
                    raise SourceError(f"HTTP {resp.status} from {source.url}")
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > source.max_bytes:
                        raise SourceError(f"response larger than {source.max_bytes} bytes")
                    chunks.append(chunk)
    except TimeoutError:
        raise SourceError(f"timed out after {source.timeout:g}s fetching {source.url}") from None
    except aiohttp.ClientError as exc:
        raise SourceError(f"cannot fetch {source.url}: {exc.__class__.__name__}: {exc}") from None
    # A price map is megabytes of JSON: parse it off the event loop, requests keep flowing.
    return await asyncio.to_thread(parse, source.format, b"".join(chunks))
