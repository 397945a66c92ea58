"""`changeover validate`: the offline gate through the CLI against a real server.
Exit 0 on pass, 1 on fail, 2 on bad input; the HTML report, `--json`, the verdict stored on the
version and the audit event are what a deployment pipeline relies on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from changeover.cli.client import Client
from modelfiles import breast_cancer, python_model, skops_classifiers
from serverproc import TOKEN, ServerProcess, running_server

ARGS = ("--task", "classification", "--target", "label")
# v3: fine on small tumours, raises on the large ones some held-out rows have
FRAGILE = """x = inputs['input']
if (x[:, 0] > 20).any():
    raise ValueError('radius out of the training range')
return {'label': (x[:, 0] < 15).astype(np.int64)}"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    x, y = breast_cancer()
    rows = np.random.default_rng(0).choice(len(x), 200, replace=False)
    frame = pd.DataFrame(x[rows], columns=[f"f{i}" for i in range(x.shape[1])])
    frame["label"] = y[rows]
    frame.to_csv(folder / "holdout.csv", index=False)
    frame.drop(columns=["label"]).to_csv(folder / "no_target.csv", index=False)
    frame.iloc[:, [*range(25), 30]].to_csv(folder / "narrow.csv", index=False)
    frame.assign(label=1).to_csv(folder / "one_class.csv", index=False)
    frame.assign(f3="high").to_csv(folder / "text_feature.csv", index=False)
    frame.assign(f3=np.where(np.arange(len(frame)) == 5, np.nan, frame["f3"])).to_csv(folder / "gap.csv", index=False)
    (folder / "empty.csv").write_bytes(b"")
    # v2 (a depth-3 tree) is a little less accurate than v1 (a logistic regression) on this data
    (folder / "pass.yaml").write_text("require:\n  accuracy: {not_worse_than: champion, margin: 0.1}\n")
    (folder / "fail.yaml").write_text("gate:\n  require:\n    accuracy: {better_than: champion}\n")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("validate")
    one, two = skops_classifiers(root / "models")
    with running_server(root / "home", env={"COLUMNS": "200"}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        assert pusher.push(one, name="m", labels={}, runtime=None, trust=False)["version"] == 1
        assert pusher.push(two, name="m", labels={}, runtime=None, trust=True)["version"] == 2  # a sklearn Tree
        fragile = python_model(root / "fragile", FRAGILE, inputs="[{name: input, datatype: FP64, shape: [-1, 30]}]",
                               outputs="[{name: label, datatype: INT64, shape: [-1]}]")
        assert pusher.push(fragile, name="m", labels={}, runtime=None, trust=True)["version"] == 3
        pusher.close()
        with srv.client() as api:
            assert api.put("/api/models/m/aliases/champion", json={"version": 1}).status_code == 200
        yield srv


def test_a_passing_gate_exits_0_with_json_a_report_a_stored_verdict_and_an_event(
        server: ServerProcess, data: Path, tmp_path: Path) -> None:
    report = tmp_path / "out.html"
    result = server.cli("validate", "m@2", "--data", str(data / "holdout.csv"), *ARGS,
                        "--policy", str(data / "pass.yaml"), "--report", str(report), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["verdict"] == "pass"
    assert (out["candidate"], out["against"], out["n_rows"]) == (2, 1, 200)
    [rule] = out["rules"]
    assert rule["metric"] == "accuracy" and rule["passed"] is True
    low, high = rule["interval"]
    assert low <= rule["figure"] <= high and low > -0.1
    accuracy = out["metrics"]["accuracy"]
    assert accuracy["diff"] == pytest.approx(accuracy["candidate"] - accuracy["champion"])
    assert {"roc_auc", "log_loss", "ece", "latency_p99_ms"} <= set(out["metrics"])

    html = report.read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "Verdict: PASS" in html

    shown = server.cli("models", "show", "m@2", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["gate"]["verdict"] == "pass"

    with server.client() as api:
        events = api.get("/api/events", params={"model": "m", "limit": 200}).json()
    gates = [e for e in events if e["kind"] == "analysis" and "offline gate of v2" in e["message"]]
    assert gates, [e["message"] for e in events]
    assert gates[-1]["message"].endswith("against v1: pass")
    assert gates[-1]["evidence"]["verdict"] == "pass"


def test_a_rule_the_candidate_cannot_meet_exits_1_and_says_why(
        server: ServerProcess, data: Path, tmp_path: Path) -> None:
    report = tmp_path / "fail.html"
    result = server.cli("validate", "m@2", "--data", str(data / "holdout.csv"), *ARGS,
                        "--policy", str(data / "fail.yaml"), "--report", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verdict: fail" in result.stdout
    assert "accuracy better than champion" in result.stdout
    assert "no evidence of an improvement" in " ".join(result.stdout.split())
    assert "Verdict: FAIL" in report.read_text()
    with server.client() as api:
        assert api.get("/api/models/m/versions/2").json()["gate"]["verdict"] == "fail"  # the newest verdict


@pytest.mark.parametrize(("file", "problem"), [
    ("no_target.csv", "target column 'label' is missing"),
    ("empty.csv", "the file is empty"),
    ("narrow.csv", "does not match the model's signature: v2 reads 30 features, the data has 25"),
    ("one_class.csv", "target column 'label' has a single class"),
    ("text_feature.csv", "feature columns are not numeric: 'f3'"),
], ids=["missing-target", "empty-file", "column-count", "one-class", "text-feature"])
def test_bad_input_exits_2_naming_the_problem(server: ServerProcess, data: Path, file: str, problem: str) -> None:
    result = server.cli("validate", "m@2", "--data", str(data / file), *ARGS, "--policy", str(data / "pass.yaml"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert problem in " ".join(result.stderr.split()), result.stderr
    assert "verdict" not in result.stdout


def test_a_policy_naming_an_unknown_metric_is_bad_input(server: ServerProcess, data: Path, tmp_path: Path) -> None:
    policy = tmp_path / "typo.yaml"
    policy.write_text("require:\n  acuracy: {min: 0.9}\n")
    result = server.cli("validate", "m@2", "--data", str(data / "holdout.csv"), *ARGS, "--policy", str(policy))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "acuracy" in result.stderr


def test_a_feature_column_with_missing_values_is_bad_input(server: ServerProcess, data: Path) -> None:
    result = server.cli("validate", "m@2", "--data", str(data / "gap.csv"), *ARGS, "--policy", str(data / "pass.yaml"))
    assert "Internal Server Error" not in result.stderr
    assert result.returncode == 2, result.stdout + result.stderr
    assert "f3" in result.stderr and "missing" in result.stderr


def test_a_candidate_that_raises_on_held_out_rows_fails_the_gate(server: ServerProcess, data: Path) -> None:
    result = server.cli("validate", "m@3", "--data", str(data / "holdout.csv"), *ARGS, "--policy", str(data / "pass.yaml"))
    assert "Internal Server Error" not in result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verdict: fail" in result.stdout
    assert "radius out of the training range" in result.stdout
    with server.client() as api:
        assert (api.get("/api/models/m/versions/3").json()["gate"] or {}).get("verdict") == "fail"
