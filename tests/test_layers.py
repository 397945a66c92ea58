"""The data plane's shape (issue 11), checked on the source: the gateway does not reach into the
management API, its modules import one another without a cycle, and the other planes take the
protocol codecs from their own module (`changeover.oip`), not from the gateway."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "changeover"


def imports_of(path: Path) -> set[str]:
    """Every changeover module a file imports, at any depth (a function's import counts too)."""
    package = ".".join(("changeover", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("changeover"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the file's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.startswith("changeover"):
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names)
    return found


def modules(package: str) -> dict[str, Path]:
    return {f"changeover.{package}.{p.stem}": p for p in (SRC / package).glob("*.py") if p.stem != "__init__"}


def test_no_gateway_module_imports_the_management_api() -> None:
    offenders = {name: sorted(m for m in imports_of(path) if m.startswith("changeover.api"))
                 for name, path in modules("gateway").items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_gateways_modules_import_one_another_without_a_cycle() -> None:
    gateway = modules("gateway")
    edges = {name: {m for m in imports_of(path) if m in gateway and m != name} for name, path in gateway.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " → ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("plane", ["runtimes", "evaluation", "monitoring", "control", "registry"])
def test_other_planes_take_the_protocol_codecs_from_their_own_module(plane: str) -> None:
    offenders = {name: sorted(m for m in imports_of(path) if m.startswith("changeover.gateway"))
                 for name, path in modules(plane).items()}
    assert {k: v for k, v in offenders.items() if v} == {}
