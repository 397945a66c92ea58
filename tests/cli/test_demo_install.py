"""`make demo` on a fresh machine installs the package alone, not the test extras (Ray, Playwright,
tritonclient...), which the demo never imports: it read `make -n demo` on an empty venv path."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("ray", "playwright", "tritonclient", "mlflow", "schemathesis", "moto")


def test_make_demo_installs_the_package_without_extras(tmp_path: Path) -> None:
    # --no-print-directory: run from `make test` (CI), a nested make says "Entering/Leaving directory"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    plan = subprocess.run(["make", "--no-print-directory", "-n", "demo", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                          capture_output=True, text=True, check=True, env=env).stdout
    installs = [line for line in plan.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs == [f"{tmp_path / 'venv'}/bin/python -m pip install -e ."], plan
    assert plan.rstrip().splitlines()[-1] == f"{tmp_path / 'venv'}/bin/changeover demo"


def test_the_demos_imports_are_in_the_base_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower().replace("-", "_") for d in project["dependencies"]}
    assert not {h for h in HEAVY if h in base}
    imported: set[str] = set()
    for name in ("demo.py", "demo_recs.py"):
        tree = ast.parse((ROOT / "src/changeover/cli" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    known = base | {"sklearn", "skops", "yaml", "changeover"} | set(__import__("sys").stdlib_module_names)
    assert imported <= known, imported - known


def test_the_demo_keeps_its_reports_in_demo_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from changeover.cli import demo

    assert inspect.signature(demo.run_demo).parameters["reports"].default == Path("demo-reports")
    monkeypatch.chdir(tmp_path)
    assert demo._relative((tmp_path / "demo-reports").resolve()) == "./demo-reports"
    assert demo._relative(Path("/elsewhere/r")) == "/elsewhere/r"
    source = inspect.getsource(demo.run_demo)
    assert 'reports / "gate-report.html"' in source and 'reports / "shadow-report.html"' in source
