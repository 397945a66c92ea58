"""Every monitoring module says what it exports, and exports what it says."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import changeover.monitoring as package

MODULES = sorted(m.name for m in pkgutil.iter_modules(package.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_all_is_honest(name: str) -> None:
    module = importlib.import_module(f"changeover.monitoring.{name}")
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert sorted(exported) == sorted(set(exported)), f"{name}: duplicates in __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"
