#!/usr/bin/env bash
# Installs what the benchmark needs; safe to re-run (skips what is present).
#   Debian: nginx-light + echo module (mock upstream), wrk (load), PostgreSQL server
#   bench/.venv-litellm: LiteLLM proxy, pinned (plus prisma for its DB mode)
#   .venv: py-spy (profiles), the project itself must already be installed there
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
LITELLM_VERSION=1.108.7   # keep in step with targets.py
# LiteLLM's own images ship its "proxy-runtime" extra; without opentelemetry-sdk the
# proxy retries a failing import on every request (~10% of its CPU), so add it.
OTEL_VERSION=1.45.2

need=()
[ -e /usr/lib/nginx/modules/ngx_http_echo_module.so ] || need+=(nginx-light libnginx-mod-http-echo)
command -v wrk >/dev/null || need+=(wrk)
command -v taskset >/dev/null || need+=(util-linux)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# Given run.py's options: skip LiteLLM when --targets is given without it.
want_litellm=1
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --targets=*) t="${args[$i]#--targets=}" ;;
    --targets) t="${args[$((i + 1))]:-}" ;;
    *) continue ;;
  esac
  [[ ",$t," == *",litellm,"* ]] || want_litellm=0
done

if [ "$want_litellm" = 1 ] && { [ ! -x "$HERE/.venv-litellm/bin/litellm" ] || \
   ! "$HERE/.venv-litellm/bin/python" -c "import importlib.metadata as m,sys; sys.exit(m.version('litellm') != '$LITELLM_VERSION' or m.version('opentelemetry-sdk') != '$OTEL_VERSION')" 2>/dev/null; }; then
  python3 -m venv "$HERE/.venv-litellm"
  "$HERE/.venv-litellm/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" prisma \
    "opentelemetry-sdk==$OTEL_VERSION"
fi

[ -x "$REPO/.venv/bin/py-spy" ] || "$REPO/.venv/bin/pip" install -q py-spy
echo "bench setup done"
