"""docs/client.md names only methods and errors the client has."""

from __future__ import annotations

import re
from pathlib import Path

import changeover
from changeover import Client

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def test_every_method_and_error_in_the_docs_exists() -> None:
    text = DOC.read_text()
    table = [line for line in text.splitlines() if line.startswith("| `")]
    methods = {m for line in table for m in re.findall(r"`(\w+)(?:\(|`)", line.split("|")[1])}
    errors = {m for m in methods if m.endswith("Error")}
    assert {"push", "set_alias", "validate", "shadow", "apply", "status", "events", "rollback", "feedback"} <= methods
    assert [m for m in methods - errors if not hasattr(Client, m)] == []
    assert [e for e in errors if not hasattr(changeover, e)] == []
