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
ROUTES = ("zero", "slow50", "stream20", "stream200")


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


class Ours(Target):
    name = "ours"

    def __init__(self, profile: str, port: int, mock_base: str, db_url: str, workdir: str):
        self.profile, self.port, self.db_url = profile, port, db_url
        self.base = f"http://127.0.0.1:{port}"
        self.cfg = _fill("gateway.toml", os.path.join(workdir, f"gateway-{profile}.toml"),
                         PORT=port, DB_URL=db_url, MOCK=mock_base,
                         BILLING="true" if profile == "production" else "false",
                         IN_PRICE=IN_PRICE, OUT_PRICE=OUT_PRICE, EMBED_PRICE=EMBED_PRICE)
        self.workdir = workdir
        if not os.path.exists(AIGATEWAY):
            self.na = "aigateway is not installed in .venv"

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
        self.proc = procs.start(f"ours-{self.profile}",
                                [AIGATEWAY, "--config", self.cfg, "serve", "--log-level", "WARNING"],
                                cpu=TARGET_CPU, log=log, cwd=self.workdir)
        if not _wait_http(f"{self.base}/healthz", self.proc, 60):
            self.na = f"did not start; see {log}"
            self.stop(procs)


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
