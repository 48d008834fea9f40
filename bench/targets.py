"""The three things under test: direct to the mock, our gateway, LiteLLM proxy.

Each target knows how to start (pinned to the target core), the URL of each
route, the bearer token to send, and the PIDs whose CPU and memory count.
"""
from __future__ import annotations

import json
import os
import re
import string
import subprocess
import time
import urllib.error
import urllib.request

import gate
import mock
from procs import TARGET_CPU, Procs

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
AIGATEWAY = os.path.join(REPO, ".venv", "bin", "aigateway")
LITELLM = os.path.join(HERE, ".venv-litellm", "bin", "litellm")
LITELLM_VERSION = "1.108.7"   # pinned; keep in step with setup.sh

# prices: TMT per 1M tokens (decimal strings, as in gateway.toml)
IN_PRICE, OUT_PRICE, EMBED_PRICE = "0.35", "1.40", "0.02"
ROUTES = ("zero", "slow50", "stream20", "stream200", "stream0", "stream1k")


def model_name(route: str) -> str:
    return f"bench-{route}"


def expected_costs() -> dict[str, int]:
    """model -> cost in units of one request, from the mock's usage numbers."""
    out = {model_name(r): gate.expected_cost(i, o, IN_PRICE, OUT_PRICE)
           for r, (i, o) in mock.USAGE.items()}
    out["bench-embed"] = gate.expected_cost(mock.EMBED_TOKENS, 0, EMBED_PRICE, "0")
    return out


def _fill(template: str, dest: str, **values) -> str:
    with open(os.path.join(HERE, template)) as f:
        text = string.Template(f.read()).substitute(values)
    with open(dest, "w") as f:
        f.write(text)
    return dest


def _wait_http(url: str, proc: subprocess.Popen | None, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return True
        except urllib.error.HTTPError:
            return True   # it answers; auth may refuse us
        except OSError:
            time.sleep(0.2)
    return False


class Target:
    name = "?"
    na: str | None = None      # reason this target cannot run in this profile
    token = "sk-none"
    proc: subprocess.Popen | None = None
    db_pids: list[int] = []    # its database server, when it has its own process

    def chat_url(self, route: str) -> str:
        return f"{self.base}/v1/chat/completions"

    def embed_url(self) -> str:
        return f"{self.base}/v1/embeddings"

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def stop(self, procs: Procs) -> None:
        if self.proc:
            procs.stop(self.proc)
            self.proc = None


class Direct(Target):
    name = "direct"

    def __init__(self, mock_base: str):
        self.base = mock_base

    def chat_url(self, route: str) -> str:
        return f"{self.base}/{route}/v1/chat/completions"

    def embed_url(self) -> str:
        return f"{self.base}/zero/v1/embeddings"


class Floor(Target):
    """bench/floor_proxy.py: aiohttp + uvloop forwarding and nothing else (the stack's floor)."""
    name = "floor"

    def __init__(self, port: int, mock_base: str, cpus: str = str(TARGET_CPU)):
        self.port, self.mock_base, self.cpus = port, mock_base, cpus
        self.base = f"http://127.0.0.1:{port}"

    def start(self, procs: Procs, log: str) -> None:
        cmd = [os.path.join(REPO, ".venv", "bin", "python"), os.path.join(HERE, "floor_proxy.py"),
               "--port", str(self.port), "--mock", self.mock_base]
        self.proc = procs.start("floor", cmd, cpu=self.cpus, log=log)
        if not _wait_http(f"{self.base}/healthz", self.proc, 30):
            self.na = f"did not start; see {log}"
            self.stop(procs)


def ours_variant(name: str) -> dict:
    """Options of an `ours...` target name: `ours`, `ours-norewrite` (answers keep the upstream's
    model name: per-model `rewrite_model = false`), `ours-nobill` (`[billing] enabled = false` in
    every profile: keys still checked, no holds, usage or ledger writes), `ours-wN` (N worker
    processes sharing holds through a private Redis; `ours-w1` is one worker with the Redis
    wallet); suffixes combine."""
    opts = {"rewrite": True, "workers": None, "billing": True}
    for part in name.split("-")[1:]:
        if part == "norewrite":
            opts["rewrite"] = False
        elif part == "nobill":
            opts["billing"] = False
        elif re.fullmatch(r"w\d+", part):
            opts["workers"] = int(part[1:])
        else:
            raise SystemExit(f"unknown target variant {part!r} in {name!r} (ours-norewrite, ours-nobill, ours-wN)")
    return opts


class Ours(Target):
    name = "ours"

    def __init__(self, profile: str, port: int, mock_base: str, db_url: str, workdir: str,
                 name: str = "ours", redis_url: str | None = None, cpus: str = str(TARGET_CPU)):
        self.name = name
        opts = ours_variant(name)
        self.workers = opts["workers"]
        self.billing = profile == "production" and opts["billing"]  # writes usage and charges
        self.profile, self.port, self.db_url, self.cpus = profile, port, db_url, cpus
        self.base = f"http://127.0.0.1:{port}"
        redis = (f'[redis]\nurl = "{redis_url}"\nkey_prefix = "bench-{name}-{profile}"\n'
                 if self.workers and redis_url else "")
        self.cfg = _fill("gateway.toml", os.path.join(workdir, f"gateway-{name}-{profile}.toml"),
                         PORT=port, DB_URL=db_url, MOCK=mock_base,
                         BILLING="true" if self.billing else "false",
                         REWRITE="true" if opts["rewrite"] else "false", REDIS=redis,
                         IN_PRICE=IN_PRICE, OUT_PRICE=OUT_PRICE, EMBED_PRICE=EMBED_PRICE)
        self.workdir = os.path.join(workdir, f"{name}-{profile}")   # its own usage spool
        os.makedirs(self.workdir, exist_ok=True)
        if not os.path.exists(AIGATEWAY):
            self.na = "aigateway is not installed in .venv"
        elif self.workers and not redis_url:
            self.na = "several workers need Redis (redis-server not found)"

    @property
    def pids(self) -> list[int]:
        """The master and its workers (the workers' CPU and memory count)."""
        if not self.proc:
            return []
        from procs import tree
        return tree([self.proc.pid])

    def _cli(self, *args: str) -> str:
        r = subprocess.run([AIGATEWAY, "--config", self.cfg, *args], capture_output=True,
                           text=True, timeout=120, cwd=self.workdir)
        if r.returncode:
            raise RuntimeError(f"aigateway {' '.join(args)} failed: {r.stderr.strip()[-800:]}")
        return r.stdout.strip()

    def start(self, procs: Procs, log: str) -> None:
        if self.na:
            return
        try:
            self._cli("migrate")
            cust = self._cli("admin", "customer", "create", "--email",
                             f"bench-{self.profile}@example.com").splitlines()[-1].strip()
            self._cli("admin", "credit", "--customer", cust, "--amount", "1000000",
                      "--reference", f"bench-topup-{self.profile}")
            self.token = self._cli("admin", "key", "create", "--customer", cust,
                                   "--name", "bench").splitlines()[-1].strip()
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            self.na = f"setup failed: {e}"
            return
        cmd = [AIGATEWAY, "--config", self.cfg, "serve", "--log-level", "WARNING"]
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        self.proc = procs.start(f"{self.name}-{self.profile}", cmd, cpu=self.cpus, log=log, cwd=self.workdir)
        if not _wait_http(f"{self.base}/healthz", self.proc, 60) or not self._all_workers(log):
            self.na = f"did not start; see {log}"
            self.stop(procs)

    def _all_workers(self, log: str, timeout: float = 60) -> bool:
        """With several workers: wait until each has answered (X-Gateway-Worker on new connections)."""
        if not self.workers or self.workers < 2:
            return True
        seen: set[str] = set()
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as r:
                    seen.add(r.headers.get("X-Gateway-Worker", ""))
            except OSError:
                time.sleep(0.2)
            if len(seen - {""}) >= self.workers:
                return True
        return False


class LiteLLM(Target):
    name = "litellm"

    def __init__(self, profile: str, port: int, mock_base: str, db_url: str | None, workdir: str):
        self.profile, self.port, self.db_url, self.workdir = profile, port, db_url, workdir
        self.base = f"http://127.0.0.1:{port}"
        per_tok = lambda p: repr(float(p) / 1e6)  # noqa: E731  TMT per token (LiteLLM's unit)
        self.cfg = _fill("litellm.yaml", os.path.join(workdir, f"litellm-{profile}.yaml"),
                         MOCK=mock_base, IN_COST=per_tok(IN_PRICE), OUT_COST=per_tok(OUT_PRICE),
                         EMBED_COST=per_tok(EMBED_PRICE))
        self.master = "sk-bench-master-key"
        if not os.path.exists(LITELLM):
            self.na = "LiteLLM is not installed (bench/setup.sh makes bench/.venv-litellm)"

    def env(self) -> dict:
        env = dict(os.environ,
                   LITELLM_MASTER_KEY=self.master,
                   LITELLM_LOCAL_MODEL_COST_MAP="True",   # no model price map download
                   LITELLM_TELEMETRY_DISABLED="True",
                   LITELLM_LOG="ERROR",
                   LITELLM_MODE="PRODUCTION",            # no .env loading
                   HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        env.pop("DATABASE_URL", None)
        if self.db_url:
            env["DATABASE_URL"] = self.db_url
        return env

    def start(self, procs: Procs, log: str) -> None:
        if self.na:
            return
        self.proc = procs.start(
            f"litellm-{self.profile}",
            [LITELLM, "--config", self.cfg, "--host", "127.0.0.1", "--port", str(self.port),
             "--num_workers", "1"],
            cpu=TARGET_CPU, log=log, env=self.env(), cwd=self.workdir)
        if not _wait_http(f"{self.base}/health/liveliness", self.proc, 120 if self.db_url else 60):
            self.na = "did not start: " + _last_error(log)
            self.stop(procs)
            return
        self.token = self.master
        if self.db_url:   # production: a virtual key with spend tracking
            try:
                req = urllib.request.Request(
                    f"{self.base}/key/generate", data=json.dumps({"key_alias": "bench"}).encode(),
                    headers={"Authorization": f"Bearer {self.master}",
                             "Content-Type": "application/json"})
                self.token = json.load(urllib.request.urlopen(req, timeout=30))["key"]
            except (OSError, KeyError, ValueError) as e:
                self.na = f"virtual key creation failed: {e}"
                self.stop(procs)


def _plain(line: str) -> str:
    """An error line without addresses or host names (reports name no outside hosts)."""
    line = re.sub(r"https?://\S+", "<url>", line)
    return re.sub(r"\b[a-z0-9-]+(\.[a-z0-9-]+)*\.(sh|io|com|org|net|ai|dev|co)\b", "<host>", line)[:300]


def _last_error(log: str) -> str:
    try:
        with open(log, errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return "no log"
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return _plain(ln)
    return _plain(lines[-1]) if lines else "empty log"
