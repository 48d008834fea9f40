"""What one request used, normalised from whatever shape the upstream reported.

Every upstream usage object is read HERE and nowhere else, into one `Counts`:

* OpenAI style (`prompt_tokens` / `completion_tokens`, or `input_tokens` /
  `output_tokens` of the Responses API): cached tokens are PART of the prompt
  (`prompt_tokens_details.cached_tokens`, `input_tokens_details.cached_tokens`),
  a cache write likewise (`prompt_tokens_details.cache_write_tokens`), and
  reasoning tokens are PART of the completion
  (`completion_tokens_details.reasoning_tokens`).
* Anthropic style (a provider with `usage_style = "anthropic"`): `input_tokens`
  (or `prompt_tokens`) counts only the uncached prompt; `cache_read_input_tokens`
  and `cache_creation_input_tokens` come ON TOP of it (the latter split into
  `cache_creation.ephemeral_1h_input_tokens` for the long-lived cache when given).

`Counts.input` is always the FULL prompt (uncached + cached + written): the
long-context tier is chosen on it, so a cache hit never moves a request into a
cheaper tier. A usage without a breakdown gives zero parts: plain prices.
Hazard: a part reported larger than its whole is cut to it (the formula in
`aigateway.money` cuts again), so a confused upstream cannot bill tokens twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Counts:
    input: int  # every prompt token: uncached + cached + cache written
    output: int  # every completion token, reasoning included
    cached: int = 0  # read from the prompt cache
    cache_write: int = 0  # written to the prompt cache (short-lived, e.g. 5 minutes)
    cache_write_long: int = 0  # written to the long-lived cache (e.g. 1 hour)
    reasoning: int = 0
    images: int = 0  # input images (counted by the gateway from the request)
    requests: int = 1  # request fees applied (0 when nothing is charged)


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _sub(obj, name: str) -> dict:
    value = obj.get(name)
    return value if isinstance(value, dict) else {}


def _total(usage: dict, *names: str) -> int | None:
    for name in names:
        value = usage.get(name)
        if value is not None:
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
    return None


def normalise(usage, style: str = "openai") -> Counts | None:
    """Counts from an upstream `usage` object, or None when it is missing or odd (we count ourselves)."""
    if not isinstance(usage, dict):
        return None
    prompt = _total(usage, "prompt_tokens", "input_tokens")
    completion = _total(usage, "completion_tokens", "output_tokens")
    if prompt is None:
        return None
    completion = completion or 0
    reasoning = _int(_sub(usage, "completion_tokens_details").get("reasoning_tokens")
                     or _sub(usage, "output_tokens_details").get("reasoning_tokens"))
    if style == "anthropic":
        cached = _int(usage.get("cache_read_input_tokens"))
        written = _int(usage.get("cache_creation_input_tokens"))
        split = _sub(usage, "cache_creation")
        long = min(_int(split.get("ephemeral_1h_input_tokens")), written)
        return Counts(input=prompt + cached + written, output=completion, cached=cached,
                      cache_write=written - long, cache_write_long=long,
                      reasoning=min(reasoning, completion))
    details = _sub(usage, "prompt_tokens_details") or _sub(usage, "input_tokens_details")
    cached = min(_int(details.get("cached_tokens")), prompt)
    written = min(_int(details.get("cache_write_tokens")), prompt - cached)
    return Counts(input=prompt, output=completion, cached=cached, cache_write=written,
                  reasoning=min(reasoning, completion))


def breakdown_text(counts: Counts) -> str:
    """A receipt line, e.g. "1,200 input of which 1,000 cached, 300 output, 1 request fee"."""
    parts = [f"{counts.input:,} input"]
    inner = [f"{n:,} {what}" for n, what in ((counts.cached, "cached"), (counts.cache_write, "cache write"),
                                             (counts.cache_write_long, "long cache write")) if n]
    if inner:
        parts[0] += " of which " + ", ".join(inner)
    parts.append(f"{counts.output:,} output" + (f" of which {counts.reasoning:,} reasoning" if counts.reasoning
                                                else ""))
    if counts.images:
        parts.append(f"{counts.images:,} image" + ("s" if counts.images != 1 else ""))
    if counts.requests:
        parts.append(f"{counts.requests:,} request fee" + ("s" if counts.requests != 1 else ""))
    return ", ".join(parts)


@dataclass(slots=True)
class UsageTotals:
    """Requests, tokens and cost added up (a day's, a model's, a customer's): the one shape every
    usage summary shares, so the rollups and the portal's pages count the same way."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0  # TMT units

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens
