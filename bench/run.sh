#!/usr/bin/env bash
# One command: install what is missing, then run the benchmark.
#   bench/run.sh            full run (~10-15 minutes)
#   bench/run.sh --quick    one short round (~2-3 minutes)
# Any other option is passed to bench/run.py (see --help).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
"$HERE/setup.sh" "$@"   # it reads --targets: LiteLLM is installed only when it is a target
exec "$(dirname "$HERE")/.venv/bin/python" "$HERE/run.py" "$@"
