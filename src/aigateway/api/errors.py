"""OpenAI's error shape, so the official SDKs raise the matching exception class.

Every non-2xx answer of the API is built here, including aiohttp's own replies to
requests it cannot parse (see `api/protocol.py`), so a client always gets
`{"error": {"message", "type", "param", "code"}}` and an `X-Request-Id` to quote.
"""

from __future__ import annotations

import orjson
from aiohttp import web


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}})

    def response(self, request_id: str | None = None) -> web.Response:
        headers = {**self.headers, REQUEST_ID_HEADER: request_id} if request_id else self.headers
        return web.Response(status=self.status, body=self.body(), content_type="application/json",
                            headers=headers)


REQUEST_ID_HEADER = "X-Request-Id"


def invalid_key(message: str = "Invalid or revoked API key. Check your key on the API Keys tab.") -> APIError:
    return APIError(401, message, code="invalid_api_key")


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, code="invalid_request", param=param)


def model_not_found(model: str) -> APIError:
    return APIError(404, f"The model '{model}' does not exist or you do not have access to it. "
                         "See GET /v1/models for the models you can use.", code="model_not_found", param="model")


def model_not_priced(model: str) -> APIError:
    return APIError(404, f"The model '{model}' has no price yet, so it is not served. Try again later "
                         "or pick another model from GET /v1/models.", code="model_not_priced", param="model")


def insufficient_balance(needed: str, available: str) -> APIError:
    return APIError(402, f"Insufficient balance: this request may cost up to {needed} TMT and your "
                         f"available balance is {available} TMT. Top up via the Deposit tab.",
                    type="insufficient_balance", code="insufficient_balance")


def providers_unavailable(model: str, retry_after: int = 30) -> APIError:
    return APIError(503, f"All providers for '{model}' are unavailable right now. "
                         f"Retry in {retry_after} seconds.",
                    type="server_error", code="providers_unavailable", headers={"Retry-After": str(retry_after)})


def billing_unavailable(retry_after: int) -> APIError:
    return APIError(503, f"Billing is briefly unavailable, so no request can be accepted right now. "
                         f"Retry in {retry_after} s.", type="server_error", code="billing_unavailable",
                    headers={"Retry-After": str(retry_after)})


def request_too_large(limit: int) -> APIError:
    return APIError(413, f"The request body is larger than {limit} bytes.", code="request_too_large")


def body_too_deep(limit: int) -> APIError:
    return APIError(400, f"The request body's JSON is nested more than {limit} levels deep.",
                    code="invalid_request")


def unsupported_encoding(encoding: str, supported: list[str]) -> APIError:
    return APIError(415, f"Content-Encoding '{encoding[:40]}' is not supported; send the body as is or "
                         f"with one of: {', '.join(supported)}.", code="unsupported_content_encoding")


def undecodable_body(encoding: str) -> APIError:
    return APIError(400, f"The request body could not be decoded as Content-Encoding '{encoding[:40]}'.",
                    code="invalid_content_encoding")


def incomplete_body() -> APIError:
    return APIError(400, "The request body is incomplete or its transfer encoding is broken.",
                    code="invalid_request")


def malformed_http(status: int, message: str) -> APIError:
    """aiohttp's parser refused the request itself (before any route or handler)."""
    code = {414: "request_line_too_long", 431: "request_headers_too_large"}.get(status, "malformed_http_request")
    return APIError(status, message, code=code)


def http_status(status: int, reason: str) -> APIError:
    """An aiohttp HTTPException under /v1 (unknown path, wrong method, ...)."""
    code = {405: "method_not_allowed"}.get(status, "invalid_request")  # 404: unknown_endpoint
    return APIError(status, reason, code=code)


def internal_error() -> APIError:
    return APIError(500, "Internal error in the gateway. Quote the X-Request-Id header when reporting it.",
                    type="server_error", code="internal_error")


SERVED = ("POST /v1/chat/completions", "POST /v1/responses", "POST /v1/messages", "POST /v1/embeddings",
          "GET /v1/models", "GET /v1/models/{model}")


def unknown_endpoint(method: str, path: str) -> APIError:
    return APIError(404, f"Unknown endpoint: {method} {path}. This gateway serves {', '.join(SERVED)}.",
                    code="unknown_endpoint")


def key_expired(when: str) -> APIError:
    return APIError(401, f"This API key expired on {when}. Create a new key on the API Keys tab.",
                    code="api_key_expired")


def key_limit(code: str, kind: str, message: str, retry_after: int) -> APIError:
    """A key limit (`rate_limit_exceeded` for requests/tokens/concurrency, `key_spend_limit_reached`)."""
    return APIError(429, message, type=kind, code=code, headers={"Retry-After": str(retry_after)})


def key_limits_unavailable(retry_after: int = 2) -> APIError:
    return APIError(503, f"Key limits cannot be checked right now. Retry in {retry_after} s.", type="server_error",
                    code="limits_unavailable", headers={"Retry-After": str(retry_after)})
