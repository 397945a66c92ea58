"""The `changeover` command as a user runs it: the console script in a subprocess against a real
server, --json on every listing, exit codes and messages, and no store of its own.

Subprocesses cost seconds each (imports), so the JSON and error tables run the same commands
in-process through Typer's runner, still over real HTTP to the real server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from changeover.cli import main as cli_main
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, free_port

CONSOLE_SCRIPT = Path(sys.executable).with_name("changeover")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("cli") / "home", env={"COLUMNS": "160"}).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "plus": python_model(root / "plus", "return inputs['x'].sum(axis=1) + 1"),
        "times": python_model(root / "times", "return inputs['x'].sum(axis=1) * 10"),
    }


def run(server: ServerProcess, *args: str, env: dict[str, str] | None = None) -> Result:
    base = {k: v for k, v in server.env.items() if k.startswith("CHANGEOVER_")}
    return CliRunner().invoke(cli_main.app, list(args), env=base | (env or {}))


def script(server: ServerProcess, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a shell would run it."""
    return subprocess.run([str(CONSOLE_SCRIPT), *args], env=server.env | (env or {}), capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_console_script_is_installed_and_helps() -> None:
    assert CONSOLE_SCRIPT.exists()
    result = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    for command in ("serve", "models", "alias", "events", "status"):
        assert command in result.stdout
    models_help = CliRunner().invoke(cli_main.app, ["models", "--help"])
    assert all(c in models_help.stdout for c in ("push", "list", "show"))
    serve_help = CliRunner().invoke(cli_main.app, ["serve", "--help"])
    assert "--host" in serve_help.stdout and "--port" in serve_help.stdout


def test_a_session_with_the_console_script(server: ServerProcess, models: dict[str, Path]) -> None:
    pushed = script(server, "models", "push", str(models["plus"]), "--name", "calc", "--trust", "--label", "owner=cli")
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed calc v1 (python" in pushed.stdout
    moved = run(server, "alias", "set", "calc", "champion", "1", "--reason", "ship it")
    assert moved.exit_code == 0, moved.stderr
    assert "champion of calc" in moved.stdout and "v1" in moved.stdout
    shown = script(server, "models", "show", "calc@champion", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["model"], data["version"], data["runtime"], data["labels"]) == ("calc", 1, "python", {"owner": "cli"})
    assert data["aliases"] == ["champion"]
    status = run(server, "status")
    assert status.exit_code == 0, status.stderr
    line = next(ln for ln in status.stdout.splitlines() if "calc" in ln)
    assert "champion=v1" in line


def test_every_listing_takes_json(server: ServerProcess, models: dict[str, Path]) -> None:
    pushed = run(server, "models", "push", str(models["times"]), "--name", "listing", "--trust", "--json")
    assert pushed.exit_code == 0, pushed.stderr
    assert json.loads(pushed.stdout)["version"] == 1
    moved = run(server, "alias", "set", "listing", "champion", "1", "--json")
    assert json.loads(moved.stdout) == {"model": "listing", "alias": "champion", "version": 1, "previous": None}
    outputs = {
        ("models", "list"): list,
        ("models", "show", "listing"): dict,
        ("models", "show", "listing@1"): dict,
        ("models", "show", "listing@champion"): dict,
        ("events",): list,
        ("events", "listing"): list,
        ("status",): dict,
    }
    for args, kind in outputs.items():
        result = run(server, *args, "--json")
        assert result.exit_code == 0, (args, result.stderr)
        assert isinstance(json.loads(result.stdout), kind), args
    events = json.loads(run(server, "events", "listing", "--json").stdout)
    assert [e["kind"] for e in events][:2] == ["push", "alias"]
    assert all(e["actor"] == "cli" for e in events[:2])


def test_tables_without_json(server: ServerProcess, models: dict[str, Path]) -> None:
    run(server, "models", "push", str(models["plus"]), "--name", "tabled", "--trust")
    listing = run(server, "models", "list")
    assert listing.exit_code == 0
    assert "model" in listing.stdout and "tabled" in listing.stdout
    events = run(server, "events", "tabled")
    assert "push" in events.stdout and "tabled" in events.stdout
    assert run(server, "status").exit_code == 0


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("models", "show", "no-such"), 2, "not found"),
        (("models", "show", "no-such@3"), 2, "not found"),
        (("alias", "set", "no-such", "champion", "1"), 2, "not found"),
        (("alias", "set", "listing", "champion", "0"), 2, "version"),
        (("models", "push", "/does/not/exist", "--name", "x"), 2, "does not exist"),
        (("models", "push", ".", "--name", "x", "--label", "oops"), 2, "k=v"),
        (("alias", "set", "listing", "champion", "one"), 2, "integer"),
    ],
)
def test_errors_exit_2_with_a_message(server: ServerProcess, args: tuple[str, ...], code: int, needle: str) -> None:
    result = run(server, *args)
    assert result.exit_code == code, result.stdout
    assert needle in result.stderr


def test_a_wrong_token_is_reported(server: ServerProcess) -> None:
    result = run(server, "models", "list", env={"CHANGEOVER_TOKEN": "wrong"})
    assert result.exit_code == 2
    assert "wrong token" in result.stderr


def test_no_server_is_reported_with_its_address(server: ServerProcess) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = script(server, "status", env={"CHANGEOVER_URL": url})
    assert result.returncode == 1
    assert f"no changeover server at {url}" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_never_opens_a_store(server: ServerProcess, tmp_path: Path) -> None:
    elsewhere = tmp_path / "client-home"
    result = run(server, "models", "list", "--json", env={
        "CHANGEOVER_HOME": str(elsewhere),
        "CHANGEOVER_STORE": "postgresql+psycopg://nobody@127.0.0.1:1/nothing",
        "CHANGEOVER_TOKEN": TOKEN,
    })
    assert result.exit_code == 0, result.stderr
    with server.client() as http:
        assert json.loads(result.stdout) == http.get("/api/models").json()
    assert not elsewhere.exists() or not any(elsewhere.rglob("*.db"))


@pytest.mark.parametrize("name", ["a/b", "..", "", "has space", ".hidden"])
def test_a_name_that_breaks_the_rule_is_refused_before_any_request(name: str) -> None:
    """The CLI checks a model name against the one rule before it sends anything: exit 2 with
    the rule, not a "Not Found" from a URL the name broke."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "changeover.cli.main", "rollback", name],
                            env={**__import__("os").environ, "CHANGEOVER_URL": "http://127.0.0.1:9"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "is not a model name" in result.stderr and "Not Found" not in result.stderr
