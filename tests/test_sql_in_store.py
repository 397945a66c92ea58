"""store/ owns all SQL: no module outside src/changeover/store/ imports `changeover.store.tables`
or builds statements with SQLAlchemy's select/insert/update/delete (read on the source with
ast, so a lazy import inside a function counts too). `NOT_YET` lists the modules whose queries
are still to move into a repository of store/; it may only shrink: a module that no longer
needs its entry fails the test until the entry is struck off."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "changeover"
DML = frozenset({"select", "insert", "update", "delete"})

# module → what it still uses; each to move into store/ (issue 12: one repository per aggregate)
NOT_YET: dict[str, set[str]] = {
    "changeover.api.rollout_routes": {"tables", "sqlalchemy.insert", "sqlalchemy.select", "sqlalchemy.update"},
    "changeover.monitoring.drift_monitor": {"tables", "sqlalchemy.select"},
    "changeover.monitoring.timeseries": {"tables", "sqlalchemy.select"},
}


def sql_uses(tree: ast.AST) -> set[str]:
    """What of the store's tables and SQLAlchemy's DML a module's source imports."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module == "changeover.store.tables" or (node.module == "changeover.store" and "tables" in names):
                found.add("tables")
            if node.module in ("sqlalchemy", "sqlalchemy.sql", "sqlalchemy.sql.expression"):
                found |= {f"sqlalchemy.{n}" for n in names & DML}
        elif isinstance(node, ast.Import):
            found |= {"tables" for a in node.names if a.name == "changeover.store.tables"}
            found |= {"sqlalchemy" for a in node.names if a.name == "sqlalchemy"}  # sqlalchemy.select(...)
    return found


def outside_store() -> dict[str, set[str]]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        if module == "changeover.store" or module.startswith("changeover.store."):
            continue
        uses = sql_uses(ast.parse(path.read_text(), filename=str(path)))
        if uses:
            out[module] = uses
    return out


def test_no_module_outside_store_imports_the_tables_or_builds_sql() -> None:
    found = outside_store()
    new = {m: sorted(u - NOT_YET.get(m, set())) for m, u in found.items() if u - NOT_YET.get(m, set())}
    assert not new, f"SQL outside store/ (put the query in a repository of store/ and call it): {new}"


def test_the_list_of_modules_still_to_move_only_shrinks() -> None:
    found = outside_store()
    done = {m: sorted(u - found.get(m, set())) for m, u in NOT_YET.items() if u - found.get(m, set())}
    assert not done, f"no longer used there: strike them off NOT_YET: {done}"


def test_the_check_sees_every_form_of_import() -> None:
    for source in ("from changeover.store import tables as t", "from changeover.store.tables import rollouts",
                   "import changeover.store.tables", "def f():\n    from sqlalchemy import select, func"):
        assert sql_uses(ast.parse(source)), source
    assert not sql_uses(ast.parse("from sqlalchemy.exc import IntegrityError\nfrom changeover.store import shadows"))
