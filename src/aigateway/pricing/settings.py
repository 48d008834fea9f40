"""The `[pricing]` section of the config: price sources, schedule, markup, guardrails.

Example (TOML):

    [pricing]
    fetch_interval = 3600          # seconds between scheduled fetches of every source
    retry_interval = 300           # after a failed fetch, try again this soon
    max_change_factor = "3"        # a change of more than x3 up or down is held for the operator
    max_limit_change_factor = "2"  # the same for a source's context length / output cap
    markup = "0.20"                # +20 % on top of upstream USD price x USD->TMT rate
    admin_token_env = "AIGATEWAY_ADMIN_TOKEN"   # enables GET /admin/pricing

    [pricing.fx]
    USD = "3.50"                   # TMT per 1 USD; applied when this value changes

    [pricing.sources.openrouter]
    format = "openrouter"
    url = "https://openrouter.ai/api/v1/models"

    [pricing.model_markup]
    "gpt-4o" = "0.10"              # per-model markup instead of the source/default one

Decimal settings are written as strings ("0.20"); a TOML number is accepted and
read through its shortest decimal text (0.2 -> "0.2"), never as binary float math.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from aigateway.config import Config, Strict
from aigateway.money import parse_decimal


class PricingConfigError(ValueError):
    """The [pricing] section or a model's price_source is inconsistent."""


class _Strict(Strict):
    model_config = ConfigDict(arbitrary_types_allowed=True)  # merged with Strict's extra="forbid"


def _markup(v) -> Decimal | None:
    if v is None:
        return None
    d = parse_decimal(v, "markup", floats=True)
    if d <= -1:
        raise ValueError("markup must be greater than -1 (it is a fraction: 0.20 = +20 %)")
    return d


class SourceSettings(_Strict):
    # openrouter: GET /api/v1/models format; litellm: model price map format.
    format: Literal["openrouter", "litellm"]
    url: str
    timeout: float = Field(30.0, gt=0)
    # Markup for models priced from this source (default: pricing.markup).
    markup: Decimal | None = None
    # Optional bearer token for a private mirror: name of the environment variable holding it.
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # A bigger response is refused as garbage.
    max_bytes: int = Field(64 * 1024 * 1024, gt=0)

    @field_validator("markup", mode="before")
    @classmethod
    def _check_markup(cls, v) -> Decimal | None:
        return _markup(v)


class PricingSettings(_Strict):
    fetch_interval: float = Field(3600.0, gt=0)
    retry_interval: float = Field(300.0, gt=0)
    # false: this process never fetches (another replica does); it still picks prices up from the DB.
    fetch: bool = True
    # A fetched price more than this factor above or below the one in force is held.
    max_change_factor: Decimal = Decimal(3)
    # A fetched context length or output cap more than this factor above or below the one in force is held.
    max_limit_change_factor: Decimal = Decimal(2)
    markup: Decimal = Decimal(0)
    model_markup: dict[str, Decimal] = Field(default_factory=dict)
    # Operator rates "TMT per 1 unit of CURRENCY" as decimal strings, e.g. {USD = "3.50"}.
    fx: dict[str, Decimal] = Field(default_factory=dict)
    sources: dict[str, SourceSettings] = Field(default_factory=dict)
    # Name of the environment variable holding the token for GET /admin/pricing (unset: no admin view).
    admin_token_env: str | None = None

    @field_validator("max_change_factor", "max_limit_change_factor", mode="before")
    @classmethod
    def _factor(cls, v, info) -> Decimal:
        d = parse_decimal(v, info.field_name, floats=True)
        if d <= 1:
            raise ValueError(f"{info.field_name} must be greater than 1 (e.g. \"3\" holds changes beyond x3 or /3)")
        return d

    @field_validator("markup", mode="before")
    @classmethod
    def _default_markup(cls, v) -> Decimal | None:  # None is then refused by the field's type
        return _markup(v)

    @field_validator("model_markup", mode="before")
    @classmethod
    def _model_markups(cls, v) -> dict:
        if not isinstance(v, dict):
            raise ValueError("model_markup must be a table of model = \"markup\"")
        return {k: _markup(x) for k, x in v.items()}

    @field_validator("fx", mode="before")
    @classmethod
    def _rates(cls, v) -> dict:
        if not isinstance(v, dict):
            raise ValueError("fx must be a table like {USD = \"3.50\"}")
        out = {}
        for currency, rate in v.items():
            d = parse_decimal(rate, f"fx.{currency}", floats=True)
            if d <= 0:
                raise ValueError(f"fx.{currency} must be positive")
            out[currency.upper()] = d
        return out

    def markup_for(self, model: str, source: str) -> Decimal:
        if model in self.model_markup:
            return self.model_markup[model]
        src = self.sources.get(source)
        if src is not None and src.markup is not None:
            return src.markup
        return self.markup

    @property
    def tick(self) -> float:
        """How often a process checks whether a fetch is due (cheap: one row read)."""
        return min(5.0, self.fetch_interval, self.retry_interval)


def load_settings(config: Config) -> PricingSettings:
    """Validate [pricing] and its consistency with the models' price_source fields."""
    try:
        settings = PricingSettings.model_validate(config.pricing or {})
    except ValueError as exc:
        raise PricingConfigError(f"[pricing]: {exc}") from exc
    names = {m.name for m in config.models}
    for model in config.models:
        if model.price_source is None:
            if model.price_source_model is not None:
                raise PricingConfigError(f"model {model.name!r}: price_source_model needs price_source")
            continue
        if model.price_source not in settings.sources:
            raise PricingConfigError(f"model {model.name!r}: price_source {model.price_source!r} is not a "
                                     f"[pricing.sources.{model.price_source}] section")
        finer = [model.cached_input_price, model.cache_write_price, model.cache_write_long_price,
                 model.reasoning_price, model.request_price, model.image_price]
        if (model.input_price is not None or model.output_price is not None or model.free
                or any(v is not None for v in finer) or model.tiers):
            raise PricingConfigError(f"model {model.name!r}: either set its price by hand (input_price/free) "
                                     "or follow price_source, not both")
    unknown = sorted(set(settings.model_markup) - names)
    if unknown:
        raise PricingConfigError(f"[pricing.model_markup] names unknown model(s): {', '.join(unknown)}")
    return settings


def tied_models(config: Config) -> dict[str, list]:
    """Models that follow a price source, grouped by source name."""
    out: dict[str, list] = {}
    for model in config.models:
        if model.price_source:
            out.setdefault(model.price_source, []).append(model)
    return out
