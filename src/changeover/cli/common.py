"""What every CLI command shares: the client, consoles, JSON output, error exits."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column

from changeover.cli.client import ApiError, Client, name_problem

console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def valid_name(name: str) -> str:
    """A model name checked before any request (typer callback): exit 2 with the rule."""
    problem = name_problem(name)
    if problem is not None:
        raise typer.BadParameter(problem)
    return name


ModelName = Annotated[str, typer.Argument(help="Model name", callback=valid_name)]


LONG_CALL_S = 900.0  # compat, validate and apply wait for work the server does while they wait (a replay, a gate)


def client(timeout: float = 60.0) -> Client:
    """The management API's client; ``timeout=LONG_CALL_S`` for a call that waits for a replay or a
    gate over the user's data, which take minutes on a large file or a busy machine."""
    return Client(timeout=timeout)


def wrapped(header: str) -> Column:
    """A table column for evidence and messages: long text wraps, and a word longer than the
    column folds onto the next line, instead of being cut ("max 1.2; Mann-Wh…")."""
    return Column(header, overflow="fold", no_wrap=False, ratio=1)


_STARTED = time.monotonic()


def progress(message: str) -> None:
    """One progress line on stderr, with the seconds since the command started, when stdout
    is not a terminal: piped or in CI there is no live view or spinner to show that a long
    command is alive and where it is (stderr, so that --json and tables on stdout stay clean)."""
    if not console.is_terminal:
        err.print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", markup=False, highlight=False, soft_wrap=True)


@contextmanager
def working(message: str) -> Iterator[None]:
    """A spinner on a terminal; otherwise a progress line at the start and one at the end."""
    if console.is_terminal:
        with console.status(message):
            yield
        return
    started = time.monotonic()
    progress(message)
    yield
    progress(f"{message.rstrip('…. ')}: done in {time.monotonic() - started:.1f}s")


EXIT_FAILED = 1  # the server could not do it (5xx, unreachable)
EXIT_BAD_INPUT = 2  # the request was wrong: a spec, a name, a field (4xx)
EXIT_CONFLICT = 3  # the request was right but lost to the state: another rollout active, a lost race (409)


def exit_code(status: int, body: Any = None) -> int:
    """The CLI's exit code for an answer (README, "Exit codes"): a 409 the server marks as a
    conflict with the state is 3; any other 4xx (a refused artifact, a wrong spec) 2."""
    if status == 409 and isinstance(body, dict) and body.get("conflict"):
        return EXIT_CONFLICT
    return EXIT_BAD_INPUT if 400 <= status < 500 else EXIT_FAILED


def fail(exc: ApiError) -> None:
    """Print the server's reason and exit: 3 for a conflict with the state, 2 for other bad
    input (4xx), 1 otherwise."""
    err.print(f"[red]error[/red]: {exc}")
    raise typer.Exit(exit_code(exc.status, exc.body))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def split_ref(ref: str) -> tuple[str, str | None]:
    name, _, version = ref.partition("@")
    return name, version or None
