"""The floor of this stack: the least an aiohttp + uvloop proxy can do, measured beside the gateway.

    .venv/bin/python bench/floor_proxy.py --port 8400 --mock http://127.0.0.1:8300

No auth, no price, no hold, no billing, no metrics, no model rename, no SSE parsing: it reads the
body, takes the route from its `model` (`bench-<route>`, as the bench's requests name it; embeddings
are on `zero`), posts the
body to the mock with one pooled client (as the gateway's upstream client is set up) and passes the
answer back (streams chunk by chunk). Whatever aiohttp + uvloop + a JSON parse cost per request on
this core, this pays too; what the gateway adds over it is the gateway's own work. `bench/run.py
--targets direct,floor,ours` runs it as the `floor` target, pinned like the others.
"""

from __future__ import annotations

import argparse

import aiohttp
import orjson
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
MOCK = web.AppKey("mock", str)
_PASSED = ("Content-Type",)


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    route = orjson.loads(body)["model"].removeprefix("bench-")
    route = "zero" if route == "embed" else route  # the mock serves embeddings on its 0 ms route
    upstream = await request.app[SESSION].post(f"{request.app[MOCK]}/{route}{request.path}", data=body,
                                               headers={"Content-Type": "application/json"})
    try:
        if upstream.content_type != "text/event-stream":
            return web.Response(body=await upstream.read(), status=upstream.status,
                                headers={h: upstream.headers[h] for h in _PASSED if h in upstream.headers})
        response = web.StreamResponse(status=upstream.status, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for data in upstream.content.iter_any():
            await response.write(data)
        await response.write_eof()
        return response
    finally:
        upstream.release()


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app(mock: str) -> web.Application:
    app = web.Application()
    app[MOCK] = mock.rstrip("/")

    async def session(app: web.Application):
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
        app[SESSION] = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                             read_bufsize=2**18, skip_auto_headers=("User-Agent",))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_post("/v1/embeddings", forward)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mock", required=True, help="the nginx mock's base URL (routes under /<route>/v1/...)")
    a = p.parse_args()
    uvloop.install()
    web.run_app(create_app(a.mock), host="127.0.0.1", port=a.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
