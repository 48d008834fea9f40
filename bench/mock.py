"""Mock OpenAI-shaped upstream: a private nginx instance with the echo module.

Every route answers from nginx's event loop with no backend, so the mock costs
almost no CPU.  The usage numbers below are what the gateways are billed for;
the correctness gate (gate.py) derives the expected cost from them.
"""
from __future__ import annotations

import os
import shutil
import socket

ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"

# usage reported by the mock, per chat route
USAGE = {
    "zero": (12, 20),
    "slow50": (12, 20),
    "stream20": (12, 20),
    "stream200": (12, 200),
    "stream0": (12, 20),
    "stream1k": (12, 200),
}
EMBED_TOKENS = 8
# stream1k: 200 chunks at 10 a second (a 20 s answer), for 1,000 streams in flight at once.
STREAM_FIRST_DELAY = {"stream20": 0.05, "stream200": 0.05, "stream0": 0.0, "stream1k": 0.05}  # s before chunk 1
STREAM_GAP = {"stream20": 0.010, "stream200": 0.002, "stream0": 0.0, "stream1k": 0.100}  # seconds between chunks
STREAM_CHUNKS = {"stream20": 20, "stream200": 200, "stream0": 20, "stream1k": 200}
STREAMS = ("stream20", "stream200", "stream0", "stream1k")

_ID = "chatcmpl-$request_id"  # nginx variable: unique per request
_CREATED = 1767225600


def _usage(p: int, c: int) -> str:
    return f'"usage":{{"prompt_tokens":{p},"completion_tokens":{c},"total_tokens":{p + c}}}'


def _completion(route: str) -> str:
    p, c = USAGE[route]
    return (
        f'{{"id":"{_ID}","object":"chat.completion","created":{_CREATED},'
        f'"model":"mock-model","choices":[{{"index":0,"message":{{"role":"assistant",'
        f'"content":"pong"}},"finish_reason":"stop"}}],{_usage(p, c)}}}'
    )


def _chunk(delta: str, finish: str = "null") -> str:
    return (
        f'data: {{"id":"{_ID}","object":"chat.completion.chunk","created":{_CREATED},'
        f'"model":"mock-model","choices":[{{"index":0,"delta":{delta},'
        f'"finish_reason":{finish}}}]}}\\n'
    )


def _stream_body(route: str) -> list[str]:
    p, c = USAGE[route]
    lines = [f"echo_sleep {STREAM_FIRST_DELAY[route]};"] if STREAM_FIRST_DELAY[route] else []
    for i in range(STREAM_CHUNKS[route]):
        role = '"role":"assistant",' if i == 0 else ""
        if i and STREAM_GAP[route]:
            lines.append(f"echo_sleep {STREAM_GAP[route]};")
        delta = "{" + role + '"content":"t%d "' % i + "}"
        lines.append(f"echo '{_chunk(delta)}';")
        lines.append("echo_flush;")
    stop = _chunk("{}", '"stop"')
    lines.append(f"echo '{stop}';")
    lines.append(
        f"echo 'data: {{\"id\":\"{_ID}\",\"object\":\"chat.completion.chunk\","
        f"\"created\":{_CREATED},\"model\":\"mock-model\",\"choices\":[],{_usage(p, c)}}}\\n';"
    )
    lines.append("echo 'data: [DONE]\\n';")
    return lines


def _embedding() -> str:
    vec = ",".join(["0.125"] * 8)
    return (
        f'{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[{vec}]}}],'
        f'"model":"mock-embed","usage":{{"prompt_tokens":{EMBED_TOKENS},"total_tokens":{EMBED_TOKENS}}}}}'
    )


_MODELS = '{"object":"list","data":[{"id":"mock-model","object":"model","created":0,"owned_by":"mock"}]}'


def _location(path: str, body: list[str], ctype: str = "application/json") -> str:
    inner = "\n        ".join(body)
    return (
        f"    location = {path} {{\n        default_type {ctype};\n"
        f"        echo_read_request_body;\n        {inner}\n    }}\n"
    )


def nginx_conf(prefix: str, port: int) -> str:
    locs = []
    for pre in ["", "/zero", "/slow50", *(f"/{r}" for r in STREAMS)]:
        locs.append(_location(f"{pre}/v1/models", [f"echo -n '{_MODELS}';"]))
        locs.append(_location(f"{pre}/v1/embeddings", [f"echo -n '{_embedding()}';"]))
    locs.append(_location("/v1/chat/completions", [f"echo -n '{_completion('zero')}';"]))
    locs.append(_location("/zero/v1/chat/completions", [f"echo -n '{_completion('zero')}';"]))
    locs.append(_location("/slow50/v1/chat/completions",
                          ["echo_sleep 0.05;", f"echo -n '{_completion('slow50')}';"]))
    for r in STREAMS:
        locs.append(_location(f"/{r}/v1/chat/completions", _stream_body(r), "text/event-stream"))
    tmp = os.path.join(prefix, "tmp")
    return f"""load_module {ECHO_MODULE};
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_body_buffer_size 64k;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    tcp_nodelay on;
    gzip off;
    server_tokens off;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
{''.join(locs)}        location / {{ return 404 '{{"error":{{"message":"no such mock route"}}}}'; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(prefix: str, port: int) -> list[str]:
    """Write the config under prefix; return the nginx command line."""
    if not os.path.exists(ECHO_MODULE) or not shutil.which("nginx"):
        raise SystemExit("nginx or its echo module is missing: run bench/setup.sh")
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(prefix, port))
    return ["nginx", "-p", prefix, "-c", conf, "-e", os.path.join(prefix, "error.log")]
