"""A rollout spec's ``gate.data`` is a path the server reads: only inside its data folders (the
home's ``data/``, where uploads go, and CHANGEOVER_DATA_FOLDERS), judged after symlinks and
``..``; anything else is a 422 naming ``gate.data`` before anything runs. `changeover apply` and
the Python client send a local file first, so the common flow needs no folder allowed."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from changeover import Client as PythonClient
from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, running_server

LABEL = "[{name: label, datatype: INT64, shape: [-1]}]"
PREDICT = ["return {'label': (inputs['x'][:, 0] > 0).astype(np.int64)}",
           "return {'label': (inputs['x'][:, 0] > 0).astype(np.int64) * 1}"]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def holdout(path: Path, rows: int = 200) -> Path:
    x = np.random.default_rng(0).normal(size=(rows, 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": (x[:, 0] > 0).astype(int)}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data-folders")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    shared = root / "shared"
    holdout(shared / "holdout.csv")
    with running_server(root / "home", env={"CHANGEOVER_DATA_FOLDERS": str(shared)}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        for number, body in enumerate(PREDICT, start=1):
            folder = python_model(root / f"v{number}", body, outputs=LABEL)
            assert pusher.push(folder, name="c", labels={}, runtime=None, trust=True)["version"] == number
        pusher.close()
        with srv.client() as api:
            assert api.put("/api/models/c/aliases/champion", json={"version": 1}).status_code == 200
        yield srv


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        client.timeout = httpx.Timeout(120)
        yield client
        if client.get("/api/rollouts", params={"model": "c", "active": True}).json():
            client.post("/api/models/c/rollout/abort")
            wait_until(lambda: not client.get("/api/rollouts", params={"model": "c", "active": True}).json(),
                       "the rollout to end")


def spec(data: str) -> dict[str, Any]:
    return {"model": "c", "candidate": "2",
            "gate": {"data": data, "task": "classification", "require": {"accuracy": {"min": 0.9}}},
            "canary": {"steps": [10], "bake": "10m"}}


def refusals(root: Path) -> list[str]:
    """Paths a token holder might name to read a file the server can: each outside the folders."""
    home = root / "home"
    outside = holdout(root / "elsewhere" / "outside.csv")
    link = home / "data" / "link.csv"  # a symlink in the home's data folder, to a file outside it
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(outside)
    return ["/etc/passwd", str(home / "token"), str(home / "data" / ".." / "token"), "../token",
            str(root / "shared" / ".." / "elsewhere" / "outside.csv"), str(outside), str(link)]


def test_a_path_outside_the_data_folders_is_a_422_naming_gate_data(server: ServerProcess, api: httpx.Client,
                                                                    root: Path) -> None:
    before = len(api.get("/api/events", params={"model": "c", "limit": 1000}).json())
    for path in refusals(root):
        r = api.post("/api/rollouts", json={"spec": spec(path)})
        assert r.status_code == 422, (path, r.text)
        (problem,) = r.json()["problems"]
        assert problem["field"] == "gate.data", r.text
        assert "outside the folders the server reads data from" in problem["reason"], r.text
        assert "CHANGEOVER_DATA_FOLDERS" in problem["reason"] and "POST /api/data" in problem["reason"]
        assert "root:" not in r.text and TOKEN not in r.text  # nothing of the files named
    assert api.get("/api/rollouts", params={"model": "c"}).json() == []
    assert len(api.get("/api/events", params={"model": "c", "limit": 1000}).json()) == before  # nothing ran


def test_a_file_in_an_allowed_folder_is_kept_as_its_real_path(server: ServerProcess, api: httpx.Client,
                                                              root: Path) -> None:
    named = root / "shared" / "sub" / ".." / "holdout.csv"
    r = api.post("/api/rollouts", json={"spec": spec(str(named))})
    assert r.status_code == 201, r.text
    stored = api.get(f"/api/rollouts/{r.json()['id']}").json()["spec"]["gate"]["data"]
    assert stored == str((root / "shared" / "holdout.csv").resolve())
    missing = api.post("/api/rollouts", json={"spec": spec(str(root / "shared" / "nope.csv"))})
    assert missing.status_code == 422 and "no such file on the server" in missing.text


def test_uploaded_data_is_kept_content_addressed_in_the_home(server: ServerProcess, api: httpx.Client,
                                                             root: Path, tmp_path: Path) -> None:
    content = holdout(tmp_path / "mine.csv").read_bytes()
    first = api.post("/api/data", params={"filename": "mine.csv"}, content=content)
    assert first.status_code == 201, first.text
    body = first.json()
    kept = Path(body["data"])
    assert kept.parent.parent == (root / "home" / "data").resolve() and kept.name == "mine.csv"
    assert kept.read_bytes() == content and body["bytes"] == len(content) and kept.parent.name == body["sha256"]
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    again = api.post("/api/data", params={"filename": "../../mine.csv"}, content=content)  # no way out by name
    assert again.status_code == 201 and again.json()["data"] == body["data"]
    assert api.post("/api/data", params={"filename": "e.csv"}, content=b"").status_code == 422
    for name in ("a\x00b.csv", "..", "x" * 201):
        refused = api.post("/api/data", params={"filename": name}, content=content)
        assert refused.status_code == 422 and "filename" in refused.json()["field"], (name, refused.text)
    assert httpx.post(f"{server.url}/api/data", params={"filename": "x.csv"}, content=content).status_code == 401
    # a relative path names a file in the home's data folder
    r = api.post("/api/rollouts", json={"spec": spec(f"{body['sha256']}/mine.csv")})
    assert r.status_code == 201, r.text


def test_the_cli_apply_sends_a_local_file_and_the_gate_reads_it(server: ServerProcess, api: httpx.Client,
                                                                tmp_path: Path) -> None:
    """The client's path is outside every data folder: only the upload lets the gate run."""
    holdout(tmp_path / "data" / "holdout.csv")
    (tmp_path / "rollout.yaml").write_text(
        'model: c\ncandidate: "2"\ngate: {data: data/holdout.csv, task: classification, '
        'require: {accuracy: {min: 0.9}}}\ncanary: {steps: [10], bake: 10m}\n')
    result = server.cli("apply", str(tmp_path / "rollout.yaml"), "--no-follow")
    assert result.returncode == 0, result.stdout + result.stderr
    (rollout,) = api.get("/api/rollouts", params={"model": "c", "active": True}).json()
    assert rollout["spec"]["gate"]["data"].startswith(str(server.home.resolve() / "data") + os.sep)

    def gated() -> Any:
        analyses = api.get(f"/api/rollouts/{rollout['id']}").json()["analyses"]
        return [a for a in analyses if a["kind"] == "gate"]

    (gate,) = wait_until(gated, "the gate's verdict")
    assert gate["outcome"] == "pass", gate
    assert gate["evidence"]["data"] == "holdout.csv"


def test_the_python_client_apply_sends_a_local_file(server: ServerProcess, api: httpx.Client, tmp_path: Path) -> None:
    data = holdout(tmp_path / "h.csv")
    with PythonClient(server.url, TOKEN) as client:
        rollout = client.apply(spec(str(data)))
    stored = api.get(f"/api/rollouts/{rollout.id}").json()["spec"]["gate"]["data"]
    assert Path(stored).parent.parent == server.home.resolve() / "data" and Path(stored).read_bytes() == data.read_bytes()
