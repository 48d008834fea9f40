"""One billed call, start to end: authenticate, price and hold, then settle.

Data flows one way: `begin` (auth, parse, model, hold) -> the view talks to
upstream routes -> `finish` (cost at the price captured in `begin`, settle
the hold, queue the usage record).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from aiohttp import web

from aigateway.accounts.keycache import KeyInfo
from aigateway.accounts.keys import looks_like_key
from aigateway.api import errors
from aigateway.api.body import check_depth, read_body
from aigateway.api.gateway import Gateway
from aigateway.api.tokens import count_images, prompt_token_bound
from aigateway.billing.recorder import UsageEvent
from aigateway.billing.wallet import Hold, InsufficientBalance, WalletUnavailable
from aigateway.catalog import Model, Price
from aigateway.keylimits.limiter import Admission
from aigateway.keylimits.values import KeyLimits, LimitReached, LimitsUnavailable
from aigateway.metrics import observe_call
from aigateway.money import format_tmt
from aigateway.providers.routes import Route
from aigateway.usage import Counts

# Request ids: 64 random bits per process + a counter. Unique across replicas and
# restarts without a syscall per request (uuid4 reads os.urandom every time).
_ID_PREFIX = "req_" + os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def _new_id_prefix() -> None:
    """A forked worker (`serve --workers N`) draws its own prefix: ids are also usage ids."""
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX, _ID_COUNTER = "req_" + os.urandom(8).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_new_id_prefix)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


# The request's id, set by the API middleware; a call takes it as its own id.
REQUEST_ID = web.RequestKey("request_id", str) if hasattr(web, "RequestKey") else "aigateway.request_id"
# The model name a request asked for, kept for its usage record if it is refused.
ASKED_MODEL = web.RequestKey("asked_model", str) if hasattr(web, "RequestKey") else "aigateway.asked_model"


def request_id(request: web.Request) -> str:
    return request.get(REQUEST_ID) or new_request_id()


@dataclass(slots=True)
class Call:
    id: str
    endpoint: str  # chat | embeddings
    key: KeyInfo
    model: Model
    price: Price  # captured at start: the call is charged at this version
    body: dict
    hold: Hold | None
    started: float
    stream: bool = False
    wants_cost: bool = False  # the usage object the client gets carries `cost` (api.receipts)
    admission: Admission | None = None  # what the key's limits took (keylimits): settled in `finish`
    images: int = 0  # input images in the request (billed at the price's per-image rate)

    def counts(self, input_tokens: int, output_tokens: int, usage: Counts | None = None) -> Counts:
        """What the call is billed for: the upstream's breakdown (or plain counts), our image count,
        and one request fee when the price has one."""
        base = usage or Counts(input_tokens, output_tokens)
        return Counts(base.input, base.output, base.cached, base.cache_write, base.cache_write_long,
                      base.reasoning, images=self.images if self.price.image_price else 0,
                      requests=1 if self.price.request_price else 0)

    def cost(self, input_tokens: int, output_tokens: int, usage: Counts | None = None) -> int:
        return self.price.cost(self.counts(input_tokens, output_tokens, usage))


async def authenticate(gateway: Gateway, request: web.Request) -> KeyInfo:
    header = request.headers.get("Authorization", "")
    if not header and (api_key := request.headers.get("x-api-key")):  # Anthropic's header (/v1/messages)
        header = "Bearer " + api_key
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise errors.invalid_key("Missing API key. Pass it as 'Authorization: Bearer gw_...'.")
    if not looks_like_key(secret) or not secret.isascii():  # non-ASCII would not even hash
        raise errors.invalid_key("Malformed API key: keys start with 'gw_'.")
    info = await gateway.keys.lookup(secret)
    if info is None:
        raise errors.invalid_key()
    return info


def parse_json_object(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.bad_request(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.bad_request("The request body must be a JSON object.")
    check_depth(raw, body)
    return body


def _positive_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise errors.bad_request(f"'{name}' must be a positive integer.", param=name)
    return value


CAP_FIELDS = ("max_completion_tokens", "max_tokens")  # OpenAI's current name first, then the legacy one


def output_token_cap(gateway: Gateway, model: Model, body: dict) -> int:
    """The most output tokens ONE choice may produce: the smallest of what the client asked
    (either field; both given, the smaller) and the model's cap (else the billing default)."""
    asked = [v for v in (_positive_int(body, name) for name in CAP_FIELDS) if v is not None]
    cap = model.max_output_tokens or gateway.config.billing.default_max_output_tokens
    return min(asked + [cap])


def cap_output(model: Model, body: dict, per_choice: int) -> None:
    """Write the cap the hold is sized for into the body sent upstream.

    Hazard: an upstream honours whichever field it knows, so every field the
    client used is rewritten; with none, the field the model's first route's
    provider reads (`output_cap_field`) is added. The hold is then a ceiling
    the upstream was told about, not a guess.
    """
    used = [name for name in CAP_FIELDS if body.get(name) is not None]
    if not used and model.routes:
        used = [min(model.routes, key=lambda r: r.priority).provider.output_cap_field]
    for name in used:
        body[name] = per_choice


async def begin(gateway: Gateway, request: web.Request, endpoint: str,
                translate: Callable[[dict], dict] | None = None) -> Call:
    """`translate` turns another API's body into a chat body (api/dialects) before anything
    is checked or held: the hold is sized on the chat body that goes upstream. An
    authenticated request refused here is recorded."""
    key = await authenticate(gateway, request)
    limits = gateway.key_limits.get(key.key_id) if gateway.key_limits is not None else None
    if limits is not None and limits.expires_at is not None and limits.expired(datetime.now(UTC)):
        raise errors.key_expired(f"{limits.expires_at:%Y-%m-%d %H:%M} UTC")
    started = time.monotonic()
    try:
        return await _open(gateway, request, endpoint, key, translate, limits)
    except errors.APIError as exc:
        record_refusal(gateway, request, key, endpoint, exc, started)
        raise


def record_refusal(gateway: Gateway, request: web.Request, key: KeyInfo, endpoint: str,
                   exc: errors.APIError, started: float) -> None:
    """A usage record for a refused call: its status and error code, cost 0, no charge."""
    if gateway.recorder is None:
        return
    # usage_records.model is a NOT NULL String(200); PostgreSQL refuses NUL characters in
    # text, and one bad row would fail its whole group-commit batch on every retry.
    asked = request.get(ASKED_MODEL) or ""
    model = asked.replace("\x00", "")[:200]
    gateway.recorder.record(UsageEvent(
        id=request_id(request), customer_id=key.customer_id, api_key_id=key.key_id, model=model,
        endpoint=endpoint, status=exc.status, error=exc.code, cost=0,
        latency_ms=int((time.monotonic() - started) * 1000),
    ))


async def _open(gateway: Gateway, request: web.Request, endpoint: str, key: KeyInfo,
                translate: Callable[[dict], dict] | None, limits: KeyLimits | None) -> Call:
    raw = await read_body(request)
    body = parse_json_object(raw)
    if translate is not None:
        body = translate(body)
        raw = orjson.dumps(body)
    name = body.get("model")
    request[ASKED_MODEL] = name if isinstance(name, str) else ""
    if not isinstance(name, str) or not name:
        raise errors.bad_request("'model' is required and must be a string.", param="model")
    model = gateway.catalog.get(name)
    if model is None or not key.may_use(name):
        raise errors.model_not_found(name)
    wanted = "chat" if endpoint == "chat" else "embedding"
    if model.type != wanted:
        other = "/v1/embeddings" if model.type == "embedding" else "/v1/chat/completions"
        raise errors.bad_request(f"'{name}' is a {model.type} model; use {other}.", param="model")
    if model.price is None:
        raise errors.model_not_priced(name)
    stream = body.get("stream", False)
    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise errors.bad_request("'messages' is required and must be a non-empty array.", param="messages")
        if not isinstance(stream, bool):
            raise errors.bad_request("'stream' must be true or false.", param="stream")
        per_choice = output_token_cap(gateway, model, body)
        cap_output(model, body, per_choice)
        output_cap = per_choice * (_positive_int(body, "n") or 1)
    else:
        value = body.get("input")
        if not isinstance(value, (str, list)) or not value:
            raise errors.bad_request("'input' is required: a string or an array of strings or tokens.",
                                     param="input")
        output_cap, stream = 0, False
    call = Call(id=request_id(request), endpoint=endpoint, key=key, model=model, price=model.price,
                body=body, hold=None, started=time.monotonic(), stream=stream)
    if endpoint == "chat" and model.price.image_price:
        call.images = count_images(body.get("messages"))
    # The ceiling: every prompt token at the highest rate of the top tier the bound reaches, the
    # larger of output/reasoning, the fee and every possible image (Price.ceiling). The key's own
    # limits and the balance hold the same amount.
    most = 0 if model.price.free else model.price.ceiling(
        prompt_token_bound(raw, model.context_length), output_cap, raw.count(b'"image_url"'))
    if limits is not None:  # the key's own limits first: the same hold amount counts against its cap
        try:
            call.admission = await gateway.key_limits.admit(limits, call.id, most)
        except LimitReached as exc:
            raise errors.key_limit(exc.code, exc.kind, exc.message, exc.retry_after) from None
        except LimitsUnavailable:
            raise errors.key_limits_unavailable() from None
    if gateway.wallet is not None and not model.price.free:
        try:
            call.hold = await gateway.wallet.hold(key.customer_id, most)
        except InsufficientBalance as exc:
            await _release_limits(gateway, call)
            raise errors.insufficient_balance(format_tmt(exc.needed), format_tmt(exc.available)) from None
        except WalletUnavailable as exc:
            await _release_limits(gateway, call)
            raise errors.billing_unavailable(exc.retry_after) from None
    return call


async def _release_limits(gateway: Gateway, call: Call, cost: int = 0, tokens: int = 0) -> None:
    admission, call.admission = call.admission, None  # exactly once, whichever path ends the call
    if admission is not None and gateway.key_limits is not None:
        await gateway.key_limits.settle(admission, cost, tokens)


async def finish(gateway: Gateway, call: Call, *, status: int, route: Route | None = None,
                 input_tokens: int = 0, output_tokens: int = 0, estimated: bool = False,
                 error: str | None = None, usage: Counts | None = None) -> int:
    """Settle the call: charge a successful one, release the hold of a failed one. Returns the cost.

    The hold is a hard ceiling: an upstream that reports more than the hold covered
    (it ignored the cap it was sent) is charged the hold, and the record is marked
    `capped`, keeping the upstream's own counts for the operator. `usage` is the upstream's
    normalised breakdown (aigateway.usage); without it the plain counts are billed.
    """
    counts = call.counts(input_tokens, output_tokens, usage)
    if usage is not None:
        input_tokens, output_tokens = usage.input, usage.output
    cost = call.price.cost(counts) if status == 200 else 0
    wallet, recorder = gateway.wallet, gateway.recorder
    if wallet is None or recorder is None:
        await _release_limits(gateway, call, cost, input_tokens + output_tokens)
        return cost
    capped = call.hold is not None and cost > call.hold.amount
    if capped:
        cost = call.hold.amount
    await _release_limits(gateway, call, cost, input_tokens + output_tokens)
    if call.hold is not None:
        if cost:
            await wallet.settle(call.hold, cost)
        else:
            await wallet.release(call.hold)
    recorder.record(UsageEvent(
        id=call.id, customer_id=call.key.customer_id, api_key_id=call.key.key_id, model=call.model.name,
        endpoint=call.endpoint, status=status,
        provider=route.provider.name if route else None, upstream_model=route.upstream_model if route else None,
        input_tokens=input_tokens, output_tokens=output_tokens, estimated=estimated, cost=cost,
        price_version_id=call.price.version_id, stream=call.stream, error=error, capped=capped,
        latency_ms=int((time.monotonic() - call.started) * 1000),
        cached_tokens=counts.cached, cache_write_tokens=counts.cache_write,
        cache_write_long_tokens=counts.cache_write_long, reasoning_tokens=counts.reasoning,
        images=counts.images if status == 200 else 0, request_fees=counts.requests if status == 200 else 0,
    ))
    observe_call(call.model.name, call.endpoint, route.provider.name if route else None, status,
                 time.monotonic() - call.started, input_tokens, output_tokens, cost)
    return cost


async def abandon(gateway: Gateway, call: Call) -> None:
    """The call ended before reaching any upstream (a bug or cancellation): free its hold."""
    await _release_limits(gateway, call)
    if call.hold is not None and gateway.wallet is not None:
        await gateway.wallet.release(call.hold)
