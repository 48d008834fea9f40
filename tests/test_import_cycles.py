"""No import cycle between aigateway's packages (scripts/check_cycles.py), and the checker finds one."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import check_cycles  # noqa: E402


def test_no_import_cycle_between_packages():
    found = check_cycles.cycles(check_cycles.package_graph())
    assert found == []


def test_the_checker_finds_a_cycle_and_skips_type_checking_imports(tmp_path):
    src = tmp_path / "aigateway"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    (src / "__init__.py").write_text("")
    (src / "a" / "__init__.py").write_text("")
    (src / "b" / "__init__.py").write_text("")
    (src / "a" / "x.py").write_text("def f():\n    from aigateway.b import y\n")  # lazy: still counts
    (src / "b" / "y.py").write_text("from ..a import x\n")
    (src / "keys.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from aigateway.a import x\n")
    (src / "c.py").write_text("from aigateway import keys\n")
    graph = check_cycles.package_graph(src)
    assert check_cycles.cycles(graph) == [["a", "b"]]
    assert graph["keys"] == set() and graph["c"] == {"keys"}


def test_the_readme_command_runs():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_cycles.py")], capture_output=True,
                            text=True, timeout=60)
    lines = result.stdout.strip().splitlines()
    assert lines and all(line.startswith(("import cycle:", "no import cycle")) for line in lines)
    assert result.returncode == (1 if any(line.startswith("import cycle:") for line in lines) else 0)
