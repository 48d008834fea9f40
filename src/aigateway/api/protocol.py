"""aiohttp's own low-level error replies, in OpenAI's error JSON.

A request aiohttp cannot parse (bare-LF line ends, a header over `max_field_size`,
data after an HTTP/1.0 body that had no Content-Length, a broken chunk size, TLS on
the plain port...) never reaches the application or its middlewares: the connection's
`RequestHandler.handle_error` answers it with a plain-text 400 of its own. aiohttp has
no setting for that reply, and the handler class is fixed inside `web.Server.__call__`,
so the only clean hook is the one aiohttp's runners are built for: a runner whose
`_make_server` (BaseRunner's hook for subclasses) returns a Server that makes
connections with our `RequestHandler` subclass. Both `aigateway serve` (`run_app`)
and the test servers use `GatewayRunner`.

Hazard: the parser's messages quote the raw bytes it choked on (a header value, the
body), which may hold an API key. Neither the client's message nor the log line ever
includes them: only the parser's fixed reason text.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from aigateway.api import errors
from aigateway.api.call import new_request_id

log = logging.getLogger(__name__)

# The request line (method, URL, version) and each header field get different limits so that
# a LineTooLong says which one overflowed: its limit is the one the parser checked.
MAX_REQUEST_LINE = 8192  # bytes; longer URLs get 414
MAX_HEADER_FIELD = 8190  # bytes (aiohttp's default); a longer header gets 431
MAX_HEADERS = 128  # more header lines get 431
# Connections the kernel queues before the loop accepts them. aiohttp's default (128) overflowed
# when 500 clients a second connected to a busy loop: the kernel dropped their SYNs and each one
# waited out TCP's retransmit back-off (1, 3, 7 s) before its first byte (bench/ streams_1k).
LISTEN_BACKLOG = 1024

_DATA_REPR = re.compile(r"""b'|b"|bytearray\(""")


def _reason(exc: HttpProcessingError) -> str:
    """The parser's own reason, without the raw bytes it quotes after a blank line."""
    text = " ".join((exc.message or "").split("\n\n", 1)[0].split()).rstrip(":")
    if not text or _DATA_REPR.search(text) or len(text) > 200:
        return "malformed request"
    return text


def parse_error(exc: BaseException | None, handler: RequestHandler) -> errors.APIError:
    """The OpenAI-shaped reply to a request aiohttp's parser refused."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == handler.max_line_size and limit != handler.max_field_size:
            return errors.malformed_http(414, f"The request line (URL) is longer than {limit} bytes.")
        return errors.malformed_http(431, f"A request header is longer than {limit} bytes.")
    if isinstance(exc, HttpProcessingError) and "Too many headers" in (exc.message or ""):
        return errors.malformed_http(431, f"The request has more than {handler.max_headers} header lines.")
    if isinstance(exc, BadHttpMethod) and "HTTPS traffic" in (exc.message or ""):
        return errors.malformed_http(400, "TLS was sent to the plain-HTTP port; use http://, or put a "
                                          "TLS-terminating proxy in front of the gateway.")
    reason = _reason(exc) if isinstance(exc, HttpProcessingError) else "malformed request"
    hint = ""
    if "Data after" in reason:
        hint = " An HTTP/1.0 request with a body needs a Content-Length header."
    elif "CR" in reason or "LF" in reason:
        hint = " Lines must end in CRLF."
    return errors.malformed_http(400, f"Malformed HTTP request: {reason}.{hint}")


class OpenAIErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering its own errors in OpenAI's shape."""

    __slots__ = ()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        parser_error = isinstance(exc, HttpProcessingError)
        if not parser_error and not request.path.startswith("/v1/"):
            return super().handle_error(request, status, exc, message)  # portal etc.: aiohttp's page
        if request.writer.output_size > 0:  # as aiohttp: a response is on its way, only closing is left
            raise ConnectionError("response already started; cannot send the error")
        request_id = new_request_id()
        if parser_error:
            error = parse_error(exc, self)
            log.info("refused a malformed HTTP request from %s (%s, %s): %s", request.remote, request_id,
                     exc.__class__.__name__, error.message)
        elif status == 504:
            error = errors.APIError(504, "The gateway timed out handling the request.", type="server_error",
                                    code="gateway_timeout")
        else:
            log.error("unhandled error on %s (%s)", request.path, request_id, exc_info=exc)
            error = errors.internal_error()
        response = error.response(request_id)
        response.force_close()  # the stream may be out of step: never reuse the connection
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        # Same as web.Server.__call__, with our handler class.
        return OpenAIErrorHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """web.AppRunner whose connections answer parse errors in OpenAI's shape."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_REQUEST_LINE)
        kwargs.setdefault("max_field_size", MAX_HEADER_FIELD)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # runs start-up, freezes the app, applies handler_args
        return _Server(server.request_handler, request_factory=server.request_factory,
                       handler_cancellation=server.handler_cancellation, loop=asyncio.get_running_loop(),
                       **server._kwargs)


def run_app(app: web.Application, *, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None,
            ready: Callable[[], None] | None = None, shutdown_timeout: float = 60.0,
            **runner_kwargs: Any) -> None:
    """`web.run_app` with GatewayRunner: serve until SIGINT/SIGTERM, then clean up.

    Listens on `host`:`port`, or on `sock` when given (a worker's inherited socket, see
    aigateway.serve.workers); `ready` is called once the site accepts connections.

    Hazard: aiohttp's own signal handling raises GracefulExit out of the loop, and
    `asyncio.run` then cancels every task at once: the usage recorder's final commit
    and the spool's close were cut short. Here a signal only sets an event, and the
    clean-up (cleanup_ctx: final commit, spool close, pools) runs to its end.
    """

    async def serve() -> None:
        runner = GatewayRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout, **runner_kwargs)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runner.setup()
        try:
            # (SockSite too: asyncio's create_server calls listen() again on an inherited socket.)
            site = (web.SockSite(runner, sock, backlog=LISTEN_BACKLOG) if sock is not None
                    else web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG))
            await site.start()
            if sock is None:  # (a worker's master says where its workers listen)
                # Only now does the port accept connections: "aigateway ready" is logged at start-up,
                # before the listener opens, and a client that connects on that line may be refused.
                log.info("listening on %s", site.name)
            if ready is not None:
                ready()
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())
