"""The README's quick tour, run as written: its commands are read from README.md itself (the bash
blocks of "Quick tour" and "The road, step by step", its gate.yaml and rollout.yaml) and run in
order, in an empty folder, against a real `changeover serve`, each expected to succeed.

It takes a minute or two, being the whole road of a new user (train, push, swap, compat, gate,
shadow, a rollout with its canary and watch, rollback): the README is tested as written, so a
tour that shadows the champion against itself, or a curl the server refuses, fails here.

What is not run, and why, is listed in SKIPPED: `source` and `serve &` (this test's venv and its
own server, started with the tour's environment), and lines with placeholders a reader fills in.
Background users send the inference requests a production model would get (the tour's curl
stands for them) so that the shadow and the canary have traffic to judge.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from serverproc import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

SKIPPED = {
    "source .venv/bin/activate": "the test runs in its own venv (its bin on PATH)",
    "changeover serve &": "the test starts the server itself, with the tour's environment, and reads its URLs",
    '"request_id": "..."': "a placeholder: the x-request-id of an answer",
    "pause|resume|abort|promote": "alternatives, while a rollout runs",
}


def tour_section(text: str) -> str:
    start = text.index("## Quick tour")
    end = text.index("\n## ", start + 1) if "\n## " in text[start + 1:] else len(text)
    after = text.find("\n### ", text.index("### The road, step by step", start) + 1)
    return text[start:min(end, after if after != -1 else end)]


def blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def commands(section: str) -> list[str]:
    """Shell commands of the bash blocks, continuation lines joined, comment-only lines dropped."""
    out: list[str] = []
    for block in blocks(section, "bash"):
        pending = ""
        for line in block.splitlines():
            if pending:
                line = pending + " " + line.strip()
                pending = ""
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1].rstrip()
                continue
            if line.strip() and not line.lstrip().startswith("#"):
                out.append(line.strip())
    return out


def files(text: str) -> dict[str, str]:
    """The YAML files the README shows, by the name in their first line's comment (``# gate.yaml``)."""
    found = {}
    for block in blocks(text, "yaml"):
        first = block.splitlines()[0]
        if re.fullmatch(r"# [\w.-]+\.yaml", first):
            found[first[2:]] = block
    return found


def test_the_tour_reads_as_the_issue_asks() -> None:
    """The tour validates and shadows v2 while v1 is champion, and shows the gate's policy format."""
    cmds = commands(tour_section(README.read_text()))
    champion = [c for c in cmds if c.startswith("changeover alias set cancer champion")]
    assert champion[-1].split()[5].startswith("1")  # the last move before the road: v1 is champion again
    assert any(c.startswith("changeover validate cancer@2") and "--policy gate.yaml" in c for c in cmds)
    assert {"gate.yaml", "rollout.yaml"} <= set(files(README.read_text()))


class Users:
    """Clients of the model, as production would have: a row of the holdout per request."""

    def __init__(self, url: str, rows: list[list[float]]) -> None:
        self.url, self.rows, self.codes = url, rows, [0, 0]  # ok, failed
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(2)]

    def run(self, seed: int) -> None:
        i = seed
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                i = (i + 7) % len(self.rows)
                r = http.post("/v2/models/cancer/infer", headers={"x-region": ("north", "south")[i % 2]},
                              json={"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP64",
                                                "data": self.rows[i]}]})
                self.codes[r.status_code != 200] += 1
                self.stop.wait(0.02)  # a steady trickle, not a load test

    def __enter__(self) -> Users:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


@pytest.fixture()
def folder(tmp_path: Path) -> Iterator[Path]:
    work = tmp_path / "tour"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")  # the tour runs from the checkout
    yield work


@pytest.mark.timeout(900)  # the whole road, on a machine that may be busy: see the module's docstring
def test_the_readme_tour_runs_as_written(folder: Path) -> None:
    text = README.read_text()
    for name, body in files(text).items():
        (folder / name).write_text(body)
    cmds = commands(tour_section(text))
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "CHANGEOVER_URL": f"http://127.0.0.1:{port}", "COLUMNS": "120"}
    env.pop("CHANGEOVER_TOKEN", None)  # the CLI reads the token the server generated, in the home
    env.pop("CHANGEOVER_HOME", None)
    server: ServerProcess | None = None
    users: Users | None = None
    ran: list[str] = []
    try:
        for cmd in cmds:
            skip = next((why for pattern, why in SKIPPED.items() if pattern in cmd), None)
            if cmd.startswith("export "):
                key, _, value = cmd.split()[1].partition("=")
                env[key] = str((folder / value).resolve()) if value.startswith("./") else value
                continue
            if cmd.startswith("changeover serve"):
                home = Path(env["CHANGEOVER_HOME"])
                server = ServerProcess(home, port=port, env={k: v for k, v in env.items() if k.startswith("CHANGEOVER_")})
                server.env.pop("CHANGEOVER_TOKEN")  # as a user starts it: the token is generated, kept in the home
                server.start(timeout=90)
                log = server.log.read_text()
                assert f"dashboard  http://127.0.0.1:{port}/" in log and "generated a management token" in log, log
                continue
            if skip:
                continue
            if cmd.startswith("curl"):
                cmd = cmd.replace("localhost:8080", f"127.0.0.1:{port}")
                holdout = pd.read_csv(folder / "holdout.csv")
                cmd = cmd.replace("[...]", str(holdout.drop(columns="label").iloc[0].tolist()).replace(" ", ""))
                cmd = cmd.replace("curl -s", "curl -sf")  # a 4xx is a failure here
            began = time.monotonic()
            result = subprocess.run(["bash", "-c", cmd], cwd=folder, env=env, capture_output=True, text=True,
                                    timeout=400)
            print(f"{time.monotonic() - began:5.1f}s exit {result.returncode}: {cmd}")  # shown when it fails
            assert result.returncode == 0, f"{cmd}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
            ran.append(shlex.split(cmd, comments=True)[1] if cmd.startswith("changeover") else cmd.split()[0])
            if cmd.startswith("changeover alias set cancer champion 1") and users is None:
                holdout = pd.read_csv(folder / "holdout.csv")
                users = Users(server.url if server else "", holdout.drop(columns="label").values.tolist()).__enter__()
            if cmd.startswith("changeover apply"):
                assert "cancer: promoted" in result.stdout, result.stdout + result.stderr
            if cmd.startswith("changeover validate"):
                assert (folder / "gate.html").is_file() and "verdict: pass" in result.stdout, result.stdout
        assert {"models", "alias", "compat", "validate", "shadow", "apply", "rollout", "rollback", "events", "drift",
                "status", "python", "curl"} <= set(ran), ran
        assert users is not None and users.codes[1] == 0, f"{users.codes if users else None}: failed user requests"
    finally:
        if users is not None:
            users.__exit__()
        if server is not None:
            server.stop()
