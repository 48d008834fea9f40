"""A route is one way to serve a model: a provider and the model's name there."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    base_url: str  # ends before /chat/completions, e.g. https://api.groq.com/openai/v1
    api_key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    connect_timeout: float = 5.0
    read_timeout: float = 300.0
    timeout: float = 600.0
    # Which field carries the output cap when the client sent none: "max_tokens" | "max_completion_tokens".
    output_cap_field: str = "max_tokens"
    # How its usage reports the prompt cache (aigateway.usage): "openai" (cached tokens are part of
    # the prompt count) or "anthropic" (cache reads and writes are counted apart from it).
    usage_style: str = "openai"
    request_headers: dict[str, str] = field(init=False, default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # Built once: the same headers go with every request to this provider.
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(self.headers)
        object.__setattr__(self, "request_headers", headers)


@dataclass(frozen=True, slots=True)
class Route:
    provider: Provider
    upstream_model: str
    priority: int = 1
    weight: int = 1
    key: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.provider.name}/{self.upstream_model}")
