"""Every README snippet parses as written: TOML (tomllib + the config model), Python (ast), shell (bash -n)."""

import ast
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from aigateway.config import Config

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def snippets(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8")) if lang == language]


def test_the_readme_has_snippets_of_each_kind():
    assert len(snippets("toml")) >= 4 and len(snippets("python")) >= 1 and len(snippets("sh")) >= 4


@pytest.mark.parametrize("body", snippets("toml"), ids=lambda b: b.strip().splitlines()[0][:40])
def test_toml_snippets_load_as_a_config(body):
    data = tomllib.loads(body)
    config = Config.model_validate(data)  # unknown keys, bad values and unknown providers fail here
    if "pricing" in data:
        from aigateway.pricing.settings import load_settings

        load_settings(config)
    if "portal" in data:
        from aigateway.portal.base import PortalSettings

        PortalSettings.model_validate(config.portal)


def test_the_full_example_names_every_config_key():
    text = next(b for b in snippets("toml") if "[billing]" in b)
    full = tomllib.loads(text)

    def keys(model, prefix=""):
        for name, field in model.model_fields.items():
            yield prefix + name
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields") and name not in ("providers", "models"):
                yield from keys(sub, prefix + name + ".")

    def present(path: str) -> bool:
        node = full
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def commented(path: str) -> bool:  # shown with its default but off, e.g. `# url = "redis://..."`
        return re.search(rf"^#\s*{re.escape(path.split('.')[-1])}\s*=", text, re.M) is not None

    # Sections owned by other concerns are documented (and tested) in their own README sections.
    elsewhere = {"pricing", "deposits", "portal"}
    missing = [k for k in keys(Config) if k.split(".")[0] not in elsewhere and not (present(k) or commented(k))]
    assert missing == []


@pytest.mark.parametrize("body", snippets("python"), ids=lambda b: b.strip().splitlines()[0][:40])
def test_python_snippets_parse(body):
    ast.parse(body)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize("body", snippets("sh"), ids=lambda b: b.strip().splitlines()[0][:40])
def test_shell_snippets_parse(body):
    result = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
