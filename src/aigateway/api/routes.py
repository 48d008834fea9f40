"""URL table of the OpenAI-compatible API, and its error middleware.

One error path: every answer under /v1 that is not a 2xx is OpenAI's error JSON,
and every answer (2xx too) carries `X-Request-Id`. The id is made here, before the
handler runs; a billed call uses it as its own id, so the header, the usage record
and the ledger reference (`usage:<id>`) all name the same request. Requests aiohttp
cannot even parse are answered by `api/protocol.py` in the same shape.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from aigateway.api import errors
from aigateway.api.call import REQUEST_ID, new_request_id
from aigateway.api.models import get_model, list_models
from aigateway.api.receipts import generation
from aigateway.api.views import chat_completions, embeddings, messages, responses

log = logging.getLogger(__name__)


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure under /v1 answers in OpenAI's error JSON, with X-Request-Id."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    request_id = request[REQUEST_ID] = new_request_id()
    try:
        response = await handler(request)
    except errors.APIError as exc:
        return exc.response(request_id)
    except web.HTTPRequestEntityTooLarge:
        return errors.request_too_large(request.client_max_size).response(request_id)
    except web.HTTPException as exc:
        if exc.status == 404:
            return errors.unknown_endpoint(request.method, request.path).response(request_id)
        if exc.status >= 400:
            error = errors.http_status(exc.status, exc.reason)
            if "Allow" in exc.headers:  # 405 names the methods the path takes
                error.headers["Allow"] = exc.headers["Allow"]
            return error.response(request_id)
        raise
    except Exception:
        log.exception("unhandled error on %s (%s)", request.path, request_id)
        return errors.internal_error().response(request_id)
    if not response.prepared:  # a stream sets its own before its first byte
        response.headers.setdefault(errors.REQUEST_ID_HEADER, request_id)
    return response


def add_api_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_get("/v1/generation", generation)
