"""`make chaos`: the long versions of the chaos tests (issue 13), then one table of what was
tried, how many times, and what survived.

Runs pytest on tests/chaos/ and the router's properties with ``CHANGEOVER_CHAOS=1`` (each
test's long scale: >= 1,000 fuzzed cases, every write pair raced on both stores, 10 kill -9
per rollout phase, the disk filled and freed 5 times); each test appends its rows to a JSON
lines file, printed here with Rich. Exit status: pytest's.

    python bench/chaos.py [-k EXPR] [--report out/chaos.jsonl] [pytest args...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/chaos", "tests/domain/test_router_properties.py"]


def table(rows: list[dict[str, object]], seconds: float, rc: int) -> Table:
    out = Table(title=f"make chaos: {len(rows)} rows in {seconds / 60:.1f} min (pytest exit {rc})")
    out.add_column("what was tried")
    out.add_column("times", justify="right")
    out.add_column("survived", justify="right")
    out.add_column("", justify="center")
    out.add_column("notes", overflow="fold")
    for row in rows:
        tried, survived = int(str(row["tried"])), int(str(row["survived"]))
        out.add_row(str(row["what"]), str(tried), str(survived), "[green]ok[/]" if survived == tried else "[red]LOST[/]",
                    str(row.get("note", "")))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, default=ROOT / "out" / "chaos.jsonl")
    args, pytest_args = parser.parse_known_args()
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.unlink(missing_ok=True)
    env = {**os.environ, "CHANGEOVER_CHAOS": "1", "CHANGEOVER_CHAOS_REPORT": str(args.report)}
    started = time.monotonic()
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS, *pytest_args],
                         cwd=ROOT, env=env)
    rows = [json.loads(line) for line in args.report.read_text().splitlines()] if args.report.exists() else []
    console = Console()
    console.print(table(rows, time.monotonic() - started, rc))
    if not rows:
        console.print("[red]no test reported a row[/] (were they all skipped or deselected?)")
    return rc or (0 if rows and all(r["tried"] == r["survived"] for r in rows) else 1)


if __name__ == "__main__":
    sys.exit(main())
