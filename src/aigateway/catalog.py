"""The catalog's values: what a model is and what it costs (`Model`, `Price`, `Tier`).

A leaf: it imports neither `pricing` nor `providers` (only `money` and `usage`; `Route` is
named for the type checker alone), so both can import it and neither imports the other.
The loader that fills a catalog from the database is `pricing.catalog.Catalog`.

A `Price` is a frozen structure: input/output plus optional cache read, cache
write (short and long-lived), reasoning, per-request fee, per-image price and
long-context tiers. `Price.cost` bills counts by `money.request_cost`; the
hold is `Price.ceiling`, which prices every token at the highest rate the
request could reach (top reachable tier, no cache discount, reasoning at the
larger of output/reasoning, the fee and every image), so no honest combination
of counts can cost more than the hold. A request captures the `Price` object
when it starts and is charged at it, whatever changes while it runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aigateway.money import request_cost, two_price_cost
from aigateway.usage import Counts

if TYPE_CHECKING:
    from aigateway.providers.routes import Route

# Optional per-version price columns beside input/output (price_versions, migration 0009_pricing_fields).
EXTRA_FIELDS = ("cached_input_price", "cache_write_price", "cache_write_long_price", "reasoning_price",
                "request_price", "image_price")


@dataclass(frozen=True, slots=True)
class Tier:
    """Prices for a request whose FULL input (cached and written tokens included) is above `above` tokens."""

    above: int
    input_price: int
    output_price: int
    cached_input_price: int | None = None

    def as_json(self) -> dict:
        out = {"above": self.above, "input": self.input_price, "output": self.output_price}
        if self.cached_input_price is not None:
            out["cached_input"] = self.cached_input_price
        return out


def tiers_to_text(tiers: tuple[Tier, ...]) -> str | None:
    return json.dumps([t.as_json() for t in sorted(tiers, key=lambda t: t.above)]) if tiers else None


def tiers_from_text(text: str | None) -> tuple[Tier, ...]:
    if not text:
        return ()
    return tuple(sorted((Tier(int(t["above"]), int(t["input"]), int(t["output"]),
                              None if t.get("cached_input") is None else int(t["cached_input"]))
                         for t in json.loads(text)), key=lambda t: t.above))


@dataclass(frozen=True, slots=True)
class Price:
    version_id: int
    input_price: int  # units per 1M tokens
    output_price: int
    free: bool = False
    cached_input_price: int | None = None  # None: input_price
    cache_write_price: int | None = None  # None: input_price
    cache_write_long_price: int | None = None  # None: cache_write_price
    reasoning_price: int | None = None  # None: output_price
    request_price: int | None = None  # units per request
    image_price: int | None = None  # units per input image
    tiers: tuple[Tier, ...] = ()  # ascending by `above`
    # One rate for every input token and one for every output token (no tiers, no cache, reasoning,
    # request or image rates): `cost` and `ceiling` are then the plain two-price formula, which is
    # what most models bill by and what every request computes twice (hold and charge).
    _plain: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        plain = (not self.tiers and self.cached_input_price is None and self.cache_write_price is None
                 and self.cache_write_long_price is None and self.reasoning_price is None
                 and not self.request_price and not self.image_price)
        object.__setattr__(self, "_plain", plain)

    @classmethod
    def from_row(cls, row: Any, version_id: int | None = None) -> Price:
        """From a price_versions row (extra columns may be absent on a partial select)."""
        get = row._mapping.get
        return cls(version_id if version_id is not None else row.id, row.input_price, row.output_price,
                   bool(row.free), tiers=tiers_from_text(get("tiers")), **{name: get(name) for name in EXTRA_FIELDS})

    def stored(self) -> dict:
        """The extra columns of this price as written to price_versions."""
        return {**{name: getattr(self, name) for name in EXTRA_FIELDS}, "tiers": tiers_to_text(self.tiers)}

    def tier(self, full_input: int) -> Tier | None:
        """The tier in force for a request with this many input tokens (the highest one it is above)."""
        chosen = None
        for tier in self.tiers:
            if full_input > tier.above:
                chosen = tier
        return chosen

    def _terms(self, tier: Tier | None) -> dict:
        base_in = tier.input_price if tier else self.input_price
        cached = tier.cached_input_price if tier and tier.cached_input_price is not None else (
            self.cached_input_price if tier is None else None)
        return {"input_price": base_in, "output_price": tier.output_price if tier else self.output_price,
                "cached_price": cached, "cache_write_price": self.cache_write_price,
                "cache_write_long_price": self.cache_write_long_price, "reasoning_price": self.reasoning_price,
                "image_price": self.image_price or 0, "request_price": self.request_price or 0}

    def effective(self, full_input: int) -> tuple[int, ...]:
        """Every rate a request of this input length pays, defaults resolved (what the guardrail compares):
        (input, output, cached, cache write, long cache write, reasoning, request fee, image)."""
        t = self._terms(self.tier(full_input))
        write = t["input_price"] if t["cache_write_price"] is None else t["cache_write_price"]
        return (t["input_price"], t["output_price"],
                t["input_price"] if t["cached_price"] is None else t["cached_price"], write,
                write if t["cache_write_long_price"] is None else t["cache_write_long_price"],
                t["output_price"] if t["reasoning_price"] is None else t["reasoning_price"],
                t["request_price"], t["image_price"])

    def cost(self, counts: Counts) -> int:
        """Units charged for these counts: the tier chosen on the full input, one rounding."""
        if self.free:
            return 0
        if self._plain:
            return two_price_cost(counts.input, counts.output, self.input_price, self.output_price)
        terms = self._terms(self.tier(counts.input))
        return request_cost(counts.input, counts.output, terms.pop("input_price"), terms.pop("output_price"),
                            cached_tokens=counts.cached, cache_write_tokens=counts.cache_write,
                            cache_write_long_tokens=counts.cache_write_long, reasoning_tokens=counts.reasoning,
                            images=counts.images, requests=counts.requests, **terms)

    def ceiling(self, max_input: int, max_output: int, max_images: int = 0) -> int:
        """The hold: the most `cost` can be for at most these counts (and one request fee)."""
        if self.free:
            return 0
        if self._plain:
            return two_price_cost(max_input, max_output, self.input_price, self.output_price)
        worst_in = worst_out = 0
        for tier in (None, *(t for t in self.tiers if max_input > t.above)):
            t = self._terms(tier)
            write = t["input_price"] if t["cache_write_price"] is None else t["cache_write_price"]
            worst_in = max(worst_in, t["input_price"], t["cached_price"] or 0, write,
                           t["cache_write_long_price"] or 0)
            worst_out = max(worst_out, t["output_price"], t["reasoning_price"] or 0)
        return request_cost(max_input, max_output, worst_in, worst_out, images=max_images, requests=1,
                            image_price=self.image_price or 0, request_price=self.request_price or 0)


@dataclass(slots=True)
class Model:
    name: str
    type: str  # chat | embedding
    routes: list[Route]
    context_length: int | None = None
    max_output_tokens: int | None = None
    price: Price | None = None
    price_updated_at: datetime | None = None
    created: int = 0
    rewrite_model: bool = True  # answers carry `name`, not the upstream's model id

    @property
    def servable(self) -> bool:
        return self.price is not None
