"""The first hour, as a new user meets it (issue 14): a version shadowed or gated against itself
is refused or said so, a spec's missing file is a spec error at `apply` (exit 2 naming the path),
and `apply` piped prints its progress as it goes. One real server, the real CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from modelfiles import breast_cancer, skops_classifiers
from serverproc import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("first-hour")
    srv = ServerProcess(root / "home").start(timeout=90)
    try:
        v1, v2 = skops_classifiers(root / "models")
        for path in (v1, v2):
            srv.cli("models", "push", str(path), "--name", "cancer", "--trust", check=True)  # v2 is a tree
        srv.cli("alias", "set", "cancer", "champion", "1", check=True)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def holdout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = breast_cancer()
    frame = pd.DataFrame(x[::3], columns=[f"f{i}" for i in range(x.shape[1])])
    frame["label"] = y[::3]
    path = tmp_path_factory.mktemp("data") / "holdout.csv"
    frame.to_csv(path, index=False)
    return path


def flat(text: str) -> str:
    """Text as printed, without the line breaks Rich puts in at the console's width."""
    return " ".join(text.split())


@pytest.fixture()
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_shadowing_the_champion_is_refused_saying_why(server: ServerProcess, api: httpx.Client) -> None:
    result = server.cli("shadow", "start", "cancer@1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "v1 is cancer's champion" in flat(result.stderr) and "shadow a candidate (e.g. cancer@2)" in flat(result.stderr)
    r = api.post("/api/models/cancer/shadows", json={"version": "champion"})
    assert r.status_code == 422 and r.json()["field"] == "version"
    assert api.get("/api/models/cancer/shadows").json() == []  # nothing started


def test_validating_the_champion_against_itself(server: ServerProcess, holdout: Path, tmp_path: Path) -> None:
    relative = tmp_path / "gate.yaml"
    relative.write_text("require:\n  accuracy: {not_worse_than: champion, margin: 0.02}\n")
    result = server.cli("validate", "cancer@1", "--data", str(holdout), "--task", "classification",
                        "--policy", str(relative))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "against: v1 is cancer's champion: the rules on accuracy would compare v1 with itself" in flat(result.stderr)

    absolute = tmp_path / "absolute.yaml"
    absolute.write_text("require:\n  accuracy: {min: 0.5}\n")
    result = server.cli("validate", "cancer@champion", "--data", str(holdout), "--task", "classification",
                        "--policy", str(absolute))
    assert result.returncode == 0, result.stdout + result.stderr
    out = flat(result.stdout)
    assert "note: v1 is cancer's champion: it was compared with no other version; only its min/max rules applied" \
        in out
    assert "there is no champion" not in out


def test_a_missing_gate_file_is_a_spec_error_at_apply(server: ServerProcess, api: httpx.Client,
                                                      tmp_path: Path) -> None:
    spec = tmp_path / "rollout.yaml"
    spec.write_text('model: cancer\ncandidate: "2"\ngate: {data: data/holdout.csv, task: classification}\n')
    result = server.cli("apply", str(spec))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "gate.data: no such file: 'data/holdout.csv'" in flat(result.stderr)
    assert str(tmp_path / "data" / "holdout.csv") in flat(result.stderr)
    # the API, for other clients: a 422 naming the field, before anything runs
    r = api.post("/api/rollouts", json={"spec": {"model": "cancer", "candidate": "2",
                                                 "gate": {"data": str(tmp_path / "nope.csv"), "task": "classification"}}})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "gate.data", r.text
    assert api.get("/api/rollouts", params={"model": "cancer"}).json() == []


def test_apply_piped_prints_progress_and_better_than_takes_a_margin(server: ServerProcess, api: httpx.Client,
                                                                    holdout: Path, tmp_path: Path) -> None:
    spec = tmp_path / "rollout.yaml"
    spec.write_text(f"""model: cancer
candidate: "2"
gate:
  data: {holdout}
  task: classification
  require:
    accuracy: {{better_than: champion, margin: 0.5}}   # better by half the rows: it cannot be
canary: {{steps: [50], bake: 10m}}
""")
    result = server.cli("apply", str(spec))  # stdout is a pipe here, as in CI
    assert result.returncode == 1, result.stdout + result.stderr
    progress = [line.split("] ", 1)[1] for line in result.stderr.splitlines() if line.startswith("[")]
    assert progress[0].startswith("starting the rollout of cancer 2: checking the spec")
    assert any(line.startswith("cancer rollout ") and ": failed, candidate at 0% — the offline gate failed" in line
               for line in progress), progress
    verdict = next(line for line in progress if line.startswith("gate verdict: fail"))
    assert "no evidence of an improvement by more than 0.5" in verdict
    assert "cancer: failed" in result.stdout
    assert api.get("/api/models/cancer").json()["aliases"]["champion"] == 1
