"""One billed call, start to end: authenticate, price and hold, then settle.

Data flows one way: `begin` (auth, parse, model, hold) -> the view talks to
upstream routes inside `async with call:` -> the call's exit settles.

Invariant: a call that `begin` returned is settled exactly once, in `Call.__aexit__`,
whatever ends it. The relay only says what the answer costs (`charge`, no I/O); the exit
then settles the hold to that cost, frees the key's limits and queues the usage record.
An `APIError` with nothing charged is recorded as that refusal (cost 0); any other end
with nothing charged (a bug, a cancellation) releases the hold and the limits unbilled.
The hold is a hard ceiling: an upstream that reports more than the hold covered (it
ignored the cap it was sent) is charged the hold, and the record is marked `capped`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

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
from aigateway.metrics import observe_call, start_call
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
    """One call and its settlement: `async with call:` around everything after `begin`."""

    id: str
    endpoint: str  # chat | embeddings
    key: KeyInfo
    model: Model
    price: Price  # captured at start: the call is charged at this version
    body: dict[str, Any]
    hold: Hold | None
    started: float
    gateway: Gateway
    stream: bool = False
    wants_cost: bool = False  # the usage object the client gets carries `cost` (api.receipts)
    admission: Admission | None = None  # what the key's limits took (keylimits): settled on exit
    images: int = 0  # input images in the request (billed at the price's per-image rate)
    outcome: UsageEvent | None = None  # what `charge` decided; settled (and recorded) on exit

    def counts(self, input_tokens: int, output_tokens: int, usage: Counts | None = None) -> Counts:
        """What the call is billed for: the upstream's breakdown (or plain counts), our image count,
        and one request fee when the price has one."""
        base = usage or Counts(input_tokens, output_tokens)
        return Counts(base.input, base.output, base.cached, base.cache_write, base.cache_write_long,
                      base.reasoning, images=self.images if self.price.image_price else 0,
                      requests=1 if self.price.request_price else 0)

    def cost(self, input_tokens: int, output_tokens: int, usage: Counts | None = None) -> int:
        return self.price.cost(self.counts(input_tokens, output_tokens, usage))

    def charge(self, *, status: int, route: Route | None = None, input_tokens: int = 0, output_tokens: int = 0,
               estimated: bool = False, error: str | None = None, usage: Counts | None = None) -> int:
        """Decide what the call costs (a non-200 costs nothing) and return it; the exit settles it.

        No I/O: the relay calls it where it knows the counts, and the exit moves the money. `usage`
        is the upstream's normalised breakdown (aigateway.usage); without it the plain counts are
        billed. The first decision stands: a later one (say, an error after the answer) is ignored.
        """
        if self.outcome is not None:
            return self.outcome.cost
        counts = self.counts(input_tokens, output_tokens, usage)
        if usage is not None:
            input_tokens, output_tokens = usage.input, usage.output
        ok = status == 200
        cost = self.price.cost(counts) if ok else 0
        capped = self.hold is not None and cost > self.hold.amount
        if capped and self.hold is not None:
            cost = self.hold.amount
        self.outcome = UsageEvent(
            id=self.id, customer_id=self.key.customer_id, api_key_id=self.key.key_id, model=self.model.name,
            endpoint=self.endpoint, status=status,
            provider=route.provider.name if route else None, upstream_model=route.upstream_model if route else None,
            input_tokens=input_tokens, output_tokens=output_tokens, estimated=estimated, cost=cost,
            price_version_id=self.price.version_id, stream=self.stream, error=error, capped=capped,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            cached_tokens=counts.cached, cache_write_tokens=counts.cache_write,
            cache_write_long_tokens=counts.cache_write_long, reasoning_tokens=counts.reasoning,
            images=counts.images if ok else 0, request_fees=counts.requests if ok else 0,
        )
        return cost

    async def __aenter__(self) -> Call:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if isinstance(exc, errors.APIError):
            exc.headers.setdefault("X-Request-Id", self.id)
            self.charge(status=exc.status, error=exc.code)  # a no-op if the answer was already charged
        if self.stream:  # shielded: a stream's settlement finishes even if its task is cancelled
            await asyncio.shield(self._settle())
        else:
            await self._settle()

    async def _settle(self) -> None:
        """Settle the hold to the charged cost (or release it), free the key's limits, record. Once."""
        gateway, event = self.gateway, self.outcome
        hold, self.hold = self.hold, None  # exactly once, whatever calls this
        if event is None:  # nothing charged: the call ended before an answer (a bug or a cancellation)
            await self._release_limits()
            if hold is not None and gateway.wallet is not None:
                await gateway.wallet.release(hold)
            return
        cost = event.cost
        await self._release_limits(cost, event.input_tokens + event.output_tokens)
        wallet, recorder = gateway.wallet, gateway.recorder
        if wallet is None or recorder is None:
            return
        if hold is not None:
            if cost:
                await wallet.settle(hold, cost)
            else:
                await wallet.release(hold)
        recorder.record(event)
        observe_call(event.model, event.endpoint, event.provider, event.status,
                     time.monotonic() - self.started, event.input_tokens, event.output_tokens, cost)

    async def _release_limits(self, cost: int = 0, tokens: int = 0) -> None:
        admission, self.admission = self.admission, None  # exactly once, whichever path ends the call
        if admission is not None and self.gateway.key_limits is not None:
            await self.gateway.key_limits.settle(admission, cost, tokens)


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


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.bad_request(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.bad_request("The request body must be a JSON object.")
    check_depth(raw, body)
    return body


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise errors.bad_request(f"'{name}' must be a positive integer.", param=name)
    return value


CAP_FIELDS = ("max_completion_tokens", "max_tokens")  # OpenAI's current name first, then the legacy one


def output_token_cap(gateway: Gateway, model: Model, body: dict[str, Any]) -> int:
    """The most output tokens ONE choice may produce: the smallest of what the client asked
    (either field; both given, the smaller) and the model's cap (else the billing default)."""
    asked = [v for v in (_positive_int(body, name) for name in CAP_FIELDS) if v is not None]
    cap = model.max_output_tokens or gateway.config.billing.default_max_output_tokens
    return min(asked + [cap])


def cap_output(model: Model, body: dict[str, Any], per_choice: int) -> None:
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
                translate: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Call:
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
                translate: Callable[[dict[str, Any]], dict[str, Any]] | None, limits: KeyLimits | None) -> Call:
    raw = await read_body(request)
    body = parse_json_object(raw)
    if translate is not None:
        body = translate(body)
        raw = orjson.dumps(body)
    model, price = _model_of(gateway, request, key, body, endpoint)
    output_cap, stream = _output_cap(gateway, model, body, endpoint)
    start_call()  # metrics: this call's upstream time starts at zero (gateway-added vs upstream histograms)
    call = Call(id=request_id(request), endpoint=endpoint, key=key, model=model, price=price,
                body=body, hold=None, started=time.monotonic(), gateway=gateway, stream=stream)
    if endpoint == "chat" and price.image_price:
        call.images = count_images(body.get("messages"))
    # The ceiling: every prompt token at the highest rate of the top tier the bound reaches, the
    # larger of output/reasoning, the fee and every possible image (Price.ceiling). The key's own
    # limits and the balance hold the same amount.
    most = 0 if price.free else price.ceiling(
        prompt_token_bound(raw, model.context_length), output_cap, raw.count(b'"image_url"'))
    limiter = gateway.key_limits
    if limits is not None and limiter is not None:  # the key's own limits first: the hold counts against its cap
        try:
            call.admission = await limiter.admit(limits, call.id, most)
        except LimitReached as exc:
            raise errors.key_limit(exc.code, exc.kind, exc.message, exc.retry_after) from None
        except LimitsUnavailable:
            raise errors.key_limits_unavailable() from None
    if gateway.wallet is not None and not price.free:
        try:
            call.hold = await gateway.wallet.hold(key.customer_id, most)
        except InsufficientBalance as exc:
            await call._release_limits()
            raise errors.insufficient_balance(format_tmt(exc.needed), format_tmt(exc.available)) from None
        except WalletUnavailable as exc:
            await call._release_limits()
            raise errors.billing_unavailable(exc.retry_after) from None
    return call


def _model_of(gateway: Gateway, request: web.Request, key: KeyInfo, body: dict[str, Any],
              endpoint: str) -> tuple[Model, Price]:
    """The model the body asks for, if this key may use it on this endpoint, and its price now."""
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
    return model, model.price


def _output_cap(gateway: Gateway, model: Model, body: dict[str, Any], endpoint: str) -> tuple[int, bool]:
    """(the most output tokens the call may produce, whether it streams), the body checked for the
    endpoint; a chat body gets the cap the hold is sized for written into it (`cap_output`)."""
    if endpoint != "chat":
        value = body.get("input")
        if not isinstance(value, (str, list)) or not value:
            raise errors.bad_request("'input' is required: a string or an array of strings or tokens.",
                                     param="input")
        return 0, False
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.bad_request("'messages' is required and must be a non-empty array.", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise errors.bad_request("'stream' must be true or false.", param="stream")
    per_choice = output_token_cap(gateway, model, body)
    cap_output(model, body, per_choice)
    return per_choice * (_positive_int(body, "n") or 1), stream
