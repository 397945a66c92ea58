"""What every CLI command shares: the client, consoles, JSON output, error exits."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from changeover.cli.client import ApiError, Client

console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def client() -> Client:
    return Client()


def fail(exc: ApiError) -> None:
    """Print the server's reason and exit: 2 for bad input (4xx), 1 otherwise."""
    err.print(f"[red]error[/red]: {exc}")
    raise typer.Exit(2 if 400 <= exc.status < 500 else 1)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def split_ref(ref: str) -> tuple[str, str | None]:
    name, _, version = ref.partition("@")
    return name, version or None
