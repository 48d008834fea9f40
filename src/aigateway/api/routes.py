"""URL table of the OpenAI-compatible API, and its error middleware."""

from __future__ import annotations

import logging

from aiohttp import web

from aigateway.api import errors
from aigateway.api.call import new_request_id
from aigateway.api.models import get_model, list_models
from aigateway.api.receipts import generation
from aigateway.api.views import chat_completions, embeddings

log = logging.getLogger(__name__)


@web.middleware
async def api_errors(request: web.Request, handler):
    """Every failure under /v1 answers in OpenAI's error JSON."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    response = await _answer(request, handler)
    if "X-Request-Id" not in response.headers and not response.prepared:
        response.headers["X-Request-Id"] = new_request_id()  # refused before a call began: still a receipt id
    return response


async def _answer(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.APIError as exc:
        return exc.response()
    except web.HTTPRequestEntityTooLarge:
        return errors.APIError(413, "The request body is too large.", code="request_too_large").response()
    except web.HTTPException as exc:
        if exc.status >= 400:
            return errors.APIError(exc.status, exc.reason, code=str(exc.status)).response()
        raise
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return errors.APIError(500, "Internal error in the gateway.", type="server_error",
                               code="internal_error").response()


def add_api_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_get("/v1/generation", generation)
