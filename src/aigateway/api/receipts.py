"""Receipts: what one request cost, for the key that made it.

Every API response carries `X-Request-Id` (a chat answer's `id` is the same value).
`GET /v1/generation?id=<id>` answers, for the key's own requests only, the model asked for, a
route label, the tokens, whether they were estimated or capped, the price version, the cost in
TMT, latency, status and time. The route label is the route's place in the model's route list
("route-1" is the first choice): the upstream provider's and model's names are the operator's
secret and never leave the gateway.

Usage rows are written by the group commit (`billing.flush_interval`, 50 ms by default) after
the response. A receipt asked for in that window is answered from the recorder's uncommitted
events of this process; a request served by another replica and not yet committed gets 404 with
code `generation_not_ready` and `Retry-After: 1` (never a wrong or partial receipt).

When the client sets `stream_options.include_usage` or `usage: {"include": true}` (OpenRouter's
spelling; removed before the request goes upstream), the usage object it gets also carries
`cost` (TMT, a string): the charge this request settles at, the hold being its ceiling.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import select

from aigateway.api import errors
from aigateway.api.call import Call, authenticate
from aigateway.api.gateway import GATEWAY, Gateway
from aigateway.appkeys import ENGINE
from aigateway.billing.tables import usage_records
from aigateway.money import format_tmt
from aigateway.providers.routes import Route
from aigateway.usage import Counts, breakdown_text


def wants_cost(body: dict[str, Any]) -> bool:
    """True when the client asked for usage in the answer; pops OpenRouter's `usage` option,
    which is ours to answer, not the upstream's."""
    usage = body.get("usage")
    asked = isinstance(usage, dict) and usage.get("include") is True
    if isinstance(usage, dict) and "include" in usage:
        body.pop("usage")
    options = body.get("stream_options")
    return asked or (isinstance(options, dict) and options.get("include_usage") is True)


def expected_charge(call: Call, input_tokens: int, output_tokens: int) -> int:
    """What `Call.charge` will charge a successful call: its cost, never more than its hold."""
    cost = call.cost(input_tokens, output_tokens)
    return min(cost, call.hold.amount) if call.hold is not None else cost


def with_cost(usage: dict[str, Any], cost: int) -> dict[str, Any]:
    return {**usage, "cost": format_tmt(cost)}


def route_label(gateway: Gateway, model: str, provider: str | None, upstream_model: str | None) -> str | None:
    entry = gateway.catalog.get(model)
    if entry is None or provider is None:
        return None
    for place, route in enumerate(entry.routes, start=1):
        if isinstance(route, Route) and route.provider.name == provider and route.upstream_model == upstream_model:
            return f"route-{place}"
    return "route-retired"  # the route was removed from the config since


def _time(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite gives naive datetimes; every stored time is UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _counts(row: Any) -> Counts:
    """What the request was billed for (a usage row, or an event not yet written: same names)."""
    return Counts(input=row.input_tokens, output=row.output_tokens, cached=row.cached_tokens,
                  cache_write=row.cache_write_tokens, cache_write_long=row.cache_write_long_tokens,
                  reasoning=row.reasoning_tokens, images=row.images, requests=row.request_fees)


async def generation(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    key = await authenticate(gateway, request)
    request_id = request.query.get("id", "").strip()
    if not request_id or len(request_id) > 40:
        raise errors.bad_request("Pass the request id: GET /v1/generation?id=req_...", param="id")
    row: Any = gateway.recorder.uncommitted_event(request_id) if gateway.recorder is not None else None
    if row is None:
        async with request.app[ENGINE].connect() as conn:
            row = (await conn.execute(select(usage_records).where(usage_records.c.id == request_id))).first()
    if row is None or row.api_key_id != key.key_id:
        raise errors.APIError(404, f"No request '{request_id}' made with this key has been recorded yet. A request "
                                   "finished less than a second ago may not be recorded yet: retry in 1 s.",
                              code="generation_not_ready", param="id", headers={"Retry-After": "1"})
    return web.Response(body=orjson.dumps({"data": {
        "id": row.id, "model": row.model, "route": route_label(gateway, row.model, row.provider, row.upstream_model),
        "endpoint": row.endpoint, "stream": row.stream, "status": row.status,
        "tokens_prompt": row.input_tokens, "tokens_completion": row.output_tokens,
        "tokens_cached": row.cached_tokens, "tokens_cache_write": row.cache_write_tokens,
        "tokens_cache_write_long": row.cache_write_long_tokens, "tokens_reasoning": row.reasoning_tokens,
        "images": row.images, "request_fees": row.request_fees, "breakdown": breakdown_text(_counts(row)),
        "estimated": row.estimated, "capped": row.capped, "price_version": row.price_version_id,
        "cost": format_tmt(row.cost), "currency": "TMT", "latency_ms": row.latency_ms,
        "created_at": _time(row.created_at),
    }}), content_type="application/json")
