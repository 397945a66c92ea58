"""The registry through the CLI against a real server process: versions, labels, runtimes
and their signatures, trust, model.yaml beside a file, listing, aliases, events, status.

The CLI runs in-process (Typer's runner: the very commands the console script runs, over real
HTTP to the server) so that each call costs milliseconds; tests/cli/test_cli.py runs the console
script itself as a subprocess."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import skops.io as sio
from click.testing import Result
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from changeover.cli import main as cli_main
from modelfiles import breast_cancer, python_model, skops_classifiers
from serverproc import ServerProcess, retry_loading, running_server


def fit_lr(C: float = 1.0) -> Pipeline:
    """A scaled logistic regression: it fits in milliseconds (unscaled, lbfgs needs thousands of steps)."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))


@dataclass
class Files:
    lr1: Path  # a scaled logistic regression (skops, trusted types only)
    tree: Path  # a decision tree (skops: sklearn.tree._tree.Tree is not trusted by default)
    lr2: Path  # another logistic regression (skops)
    onnx: Path
    pkl: Path
    joblib: Path
    folder: Path  # python runtime
    declared: Path  # a .skops with a model.yaml beside it
    named_sidecar: Path  # a .skops with NAME.yaml beside it
    onnx_bin: Path  # ONNX bytes under a suffix that tells nothing


def make_onnx(path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    x, y = breast_cancer()
    model = fit_lr().fit(x.astype(np.float32), y)
    onx = convert_sklearn(model, initial_types=[("features", FloatTensorType([None, 30]))],
                          options={LogisticRegression: {"zipmap": False}}, target_opset=17)
    path.write_bytes(onx.SerializeToString())


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("artifacts")
    x, y = breast_cancer()
    lr1, tree = skops_classifiers(root / "skops")
    lr2 = root / "skops" / "lr2.skops"
    sio.dump(fit_lr(C=0.01).fit(x, y), lr2)
    make_onnx(root / "lr.onnx")
    (root / "bin").mkdir()
    (root / "bin" / "lr.bin").write_bytes((root / "lr.onnx").read_bytes())
    small = fit_lr().fit(x[:, :4], y)
    joblib.dump(small, root / "lr.pkl")
    joblib.dump(small, root / "lr.joblib")
    folder = python_model(root / "double", "return inputs['x'].sum(axis=1) * 2")
    (root / "declared").mkdir()
    sio.dump(fit_lr(C=0.5).fit(x, y), root / "declared" / "clf.skops")
    (root / "declared" / "model.yaml").write_text(
        "inputs: [{name: features, datatype: FP64, shape: [-1, 30]}]\n"
        "outputs: [{name: label, datatype: INT64, shape: [-1]}, {name: probabilities, datatype: FP64, shape: [-1, 2]}]\n"
    )
    (root / "sidecar").mkdir()
    sio.dump(fit_lr(C=0.2).fit(x, y), root / "sidecar" / "risk.skops")
    (root / "sidecar" / "risk.skops.yaml").write_text(
        "inputs: [{name: applicant, datatype: FP64, shape: [-1, 30]}]\n"
        "outputs: [{name: label, datatype: INT64, shape: [-1]}, {name: probabilities, datatype: FP64, shape: [-1, 2]}]\n"
    )
    return Files(lr1, tree, lr2, root / "lr.onnx", root / "lr.pkl", root / "lr.joblib", folder,
                 root / "declared" / "clf.skops", root / "sidecar" / "risk.skops", root / "bin" / "lr.bin")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("home")) as srv:
        yield srv


@pytest.fixture(scope="module", autouse=True)
def wide_console() -> Iterator[None]:
    """Rich tables as on a wide terminal, so cells are not cut."""
    old = cli_main.console.width
    cli_main.console.width = 250
    yield
    cli_main.console.width = old


def cli(server: ServerProcess, *args: str, code: int = 0) -> Result:
    env = {k: v for k, v in server.env.items() if k.startswith("CHANGEOVER_")}
    result = CliRunner().invoke(cli_main.app, [str(a) for a in args], env=env)
    assert result.exit_code == code, (
        f"changeover {' '.join(map(str, args))} exited {result.exit_code}, not {code}:\n{result.stdout}\n{result.stderr}"
    )
    return result


def cli_json(server: ServerProcess, *args: str) -> object:
    return json.loads(cli(server, *args, "--json").stdout)


def infer(server: ServerProcess, model: str, name: str, x: np.ndarray, datatype: str, version: int | None = None) -> httpx.Response:
    body = {"inputs": [{"name": name, "datatype": datatype, "shape": list(x.shape), "data": x.reshape(-1).tolist()}]}
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    with server.client() as http:
        deadline = time.monotonic() + 10
        while True:  # the controller publishes the new champion within a tick
            response = retry_loading(lambda: http.post(path, json=body))
            if response.status_code != 404 or time.monotonic() > deadline:
                return response
            time.sleep(0.05)


# ---- versions -----------------------------------------------------------------------------


def test_push_numbers_versions_and_the_same_bytes_return_the_existing_one(server: ServerProcess, files: Files) -> None:
    first = cli(server, "models", "push", files.lr1, "--name", "cancer")
    assert "pushed cancer v1 (skops" in first.stdout
    second = cli(server, "models", "push", files.lr2, "--name", "cancer")
    assert "pushed cancer v2 (skops" in second.stdout
    again = cli(server, "models", "push", files.lr1, "--name", "cancer")
    assert "already stored as cancer v1" in again.stdout
    data = cli_json(server, "models", "push", files.lr2, "--name", "cancer")
    assert isinstance(data, dict)
    assert (data["version"], data["created"]) == (2, False)
    show = cli_json(server, "models", "show", "cancer")
    assert isinstance(show, dict)
    assert [v["version"] for v in show["versions"]] == [1, 2]
    shas = [v["sha256"] for v in show["versions"]]
    assert len(set(shas)) == 2 and all(len(s) == 64 for s in shas)
    # the same bytes under another model are that model's own v1
    other = cli_json(server, "models", "push", files.lr1, "--name", "cancer-copy")
    assert isinstance(other, dict) and (other["version"], other["created"]) == (1, True)
    assert other["sha256"] == shas[0]


def test_labels_are_kept_with_the_version(server: ServerProcess, files: Files) -> None:
    data = cli_json(server, "models", "push", files.folder, "--name", "labelled", "--trust", "--label", "team=search",
                    "--label", "dataset=bc-2024")
    assert isinstance(data, dict) and data["labels"] == {"team": "search", "dataset": "bc-2024"}
    shown = cli_json(server, "models", "show", "labelled@1")
    assert isinstance(shown, dict) and shown["labels"] == {"team": "search", "dataset": "bc-2024"}
    table = cli(server, "models", "show", "labelled").stdout
    assert "team=search" in table and "dataset=bc-2024" in table
    bad = cli(server, "models", "push", files.folder, "--name", "labelled", "--trust", "--label", "no-equals-sign", code=2)
    assert "k=v" in bad.stderr


def test_an_invalid_model_name_is_refused(server: ServerProcess, files: Files) -> None:
    result = cli(server, "models", "push", files.folder, "--name", "bad name!", "--trust", code=2)
    assert "name" in result.stderr


# ---- runtimes and signatures --------------------------------------------------------------


def test_skops_runtime_and_signature_from_the_estimator(server: ServerProcess, files: Files) -> None:
    data = cli_json(server, "models", "push", files.lr1, "--name", "sk")
    assert isinstance(data, dict)
    assert data["runtime"] == "skops" and data["trusted"] is False
    assert data["signature"]["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 30]}]
    assert data["signature"]["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
    ]


def test_onnx_runtime_and_signature_from_the_graph(server: ServerProcess, files: Files) -> None:
    data = cli_json(server, "models", "push", files.onnx, "--name", "onnx-model")
    assert isinstance(data, dict)
    assert data["runtime"] == "onnx"
    assert data["signature"]["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 30]}]
    assert data["signature"]["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
    ]
    cli(server, "alias", "set", "onnx-model", "champion", "1")
    x, y = breast_cancer()
    response = infer(server, "onnx-model", "features", x[:20].astype(np.float32), "FP32")
    assert response.status_code == 200, response.text
    assert response.headers["x-changeover-version"] == "1"
    label = response.json()["outputs"][0]
    assert label["name"] == "label" and label["datatype"] == "INT64"
    assert np.mean(np.array(label["data"]) == y[:20]) >= 0.9


def test_runtime_can_be_given_when_the_file_does_not_tell(server: ServerProcess, files: Files) -> None:
    refused = cli(server, "models", "push", files.onnx_bin, "--name", "bin-model", code=2)
    assert "--runtime" in refused.stderr
    data = cli_json(server, "models", "push", files.onnx_bin, "--name", "bin-model", "--runtime", "onnx")
    assert isinstance(data, dict) and data["runtime"] == "onnx"
    assert data["signature"]["inputs"][0]["name"] == "features"


def test_python_folder_runtime_with_its_declared_signature(server: ServerProcess, files: Files) -> None:
    data = cli_json(server, "models", "push", files.folder, "--name", "double", "--trust")
    assert isinstance(data, dict)
    assert data["runtime"] == "python"
    assert data["signature"] == {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}],
    }
    cli(server, "alias", "set", "double", "champion", "1")
    response = infer(server, "double", "x", np.array([[1.0, 2.0], [0.5, 0.25]]), "FP64")
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [{"name": "y", "datatype": "FP64", "shape": [2], "data": [6.0, 1.5]}]


@pytest.mark.parametrize("which", ["pkl", "joblib"])
def test_pickles_are_refused_without_trust_and_recorded_as_trusted_with_it(
    server: ServerProcess, files: Files, which: str
) -> None:
    path = getattr(files, which)
    name = f"pickled-{which}"
    refused = cli(server, "models", "push", path, "--name", name, code=2)
    assert "pickle" in refused.stderr and "--trust" in refused.stderr
    cli(server, "models", "show", name, code=2)  # no version was created
    events = cli_json(server, "events", "--limit", "500")
    assert isinstance(events, list)
    assert any(e["kind"] == "refused" and e["evidence"]["model"] == name for e in events)
    data = cli_json(server, "models", "push", path, "--name", name, "--trust")
    assert isinstance(data, dict)
    assert (data["version"], data["runtime"], data["trusted"]) == (1, "pickle", True)
    assert data["signature"]["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert "pickle (trusted)" in cli(server, "models", "show", name).stdout
    push_event = [e for e in cli_json(server, "events", name) if e["kind"] == "push"]  # type: ignore[union-attr]
    assert push_event and push_event[-1]["message"].endswith("; trusted: whole file (--trust by cli)")
    assert push_event[-1]["evidence"]["trust"] == "--trust"
    cli(server, "alias", "set", name, "champion", "1")
    x, _ = breast_cancer()
    response = infer(server, name, "input", x[:3, :4], "FP64")
    assert response.status_code == 200, response.text


def test_skops_with_an_untrusted_type_is_refused_naming_the_type(server: ServerProcess, files: Files) -> None:
    refused = cli(server, "models", "push", files.tree, "--name", "tree", code=2)
    assert "sklearn.tree._tree.Tree" in refused.stderr.replace("\n", "")
    cli(server, "models", "show", "tree", code=2)
    data = cli_json(server, "models", "push", files.tree, "--name", "tree", "--trust")
    assert isinstance(data, dict) and (data["runtime"], data["trusted"]) == ("skops", True)
    message = [e for e in cli_json(server, "events", "tree") if e["kind"] == "push"][-1]["message"]  # type: ignore[union-attr]
    assert message.endswith("; trusted: whole file (--trust by cli)") and "pickle" not in message.lower()
    cli(server, "alias", "set", "tree", "champion", "1")
    x, _ = breast_cancer()
    response = infer(server, "tree", "input", x[:5], "FP64")
    assert response.status_code == 200, response.text


def test_a_model_yaml_beside_a_file_declares_the_signature(server: ServerProcess, files: Files) -> None:
    data = cli_json(server, "models", "push", files.declared, "--name", "declared")
    assert isinstance(data, dict)
    assert data["runtime"] == "skops"
    assert data["signature"]["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, 30]}]
    sidecar = cli_json(server, "models", "push", files.named_sidecar, "--name", "sidecar")
    assert isinstance(sidecar, dict)
    assert sidecar["signature"]["inputs"] == [{"name": "applicant", "datatype": "FP64", "shape": [-1, 30]}]
    cli(server, "alias", "set", "declared", "champion", "1")
    x, _ = breast_cancer()
    ok = infer(server, "declared", "features", x[:4], "FP64")
    assert ok.status_code == 200, ok.text
    wrong = infer(server, "declared", "input", x[:4], "FP64")  # the estimator's own name is not the contract
    assert wrong.status_code == 422
    assert "features" in wrong.json()["expected"]


def test_a_model_yaml_may_say_the_task_of_an_artifact_that_carries_its_signature(
        server: ServerProcess, files: Files, tmp_path: Path) -> None:
    # a classifier's probability used as one score per (query, item) row: a ranker, by declaration
    (tmp_path / "ok").mkdir()
    scorer = tmp_path / "ok" / "scorer.skops"
    scorer.write_bytes(files.lr2.read_bytes())
    (tmp_path / "ok" / "scorer.skops.yaml").write_text("task: ranking\n")
    data = cli_json(server, "models", "push", scorer, "--name", "scorer")
    assert isinstance(data, dict)
    assert (data["signature"]["task"], data["task"]) == ("ranking", "ranking")
    assert data["roles"] == {"label": "label", "probabilities": "probabilities"}  # inferred from the estimator's names
    assert data["signature"]["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 30]}]
    (tmp_path / "bad").mkdir()
    wrong = tmp_path / "bad" / "scorer.skops"
    wrong.write_bytes(files.lr2.read_bytes())
    (tmp_path / "bad" / "scorer.skops.yaml").write_text("task: clustering\n")
    refused = cli(server, "models", "push", wrong, "--name", "clusters", code=2)
    assert "task 'clustering' is not one of classification, regression, ranking" in " ".join(refused.stderr.split())


# ---- listing, aliases, events, status -----------------------------------------------------


def test_models_list_and_show_in_tables_and_json(server: ServerProcess, files: Files) -> None:
    cli(server, "models", "push", files.lr1, "--name", "listed")
    cli(server, "models", "push", files.lr2, "--name", "listed")
    cli(server, "alias", "set", "listed", "champion", "2")
    listing = cli_json(server, "models", "list")
    assert isinstance(listing, list)
    row = next(r for r in listing if r["model"] == "listed")
    assert row == {"model": "listed", "versions": [1, 2], "aliases": {"champion": 2}}
    table = cli(server, "models", "list").stdout
    line = next(ln for ln in table.splitlines() if " listed " in ln)
    assert "1, 2" in line and "champion=v2" in line

    shown = cli_json(server, "models", "show", "listed")
    assert isinstance(shown, dict)
    assert shown["aliases"] == {"champion": 2}
    assert [v["aliases"] for v in shown["versions"]] == [[], ["champion"]]
    table = cli(server, "models", "show", "listed").stdout
    assert "champion" in table and "skops" in table and "input FP64 [-1, 30]" in table

    by_number = cli_json(server, "models", "show", "listed@1")
    by_alias = cli_json(server, "models", "show", "listed@champion")
    assert isinstance(by_number, dict) and isinstance(by_alias, dict)
    assert by_number["version"] == 1 and by_number["aliases"] == []
    assert by_alias["version"] == 2 and by_alias["aliases"] == ["champion"]
    assert by_alias["sha256"] == shown["versions"][1]["sha256"]
    one_table = cli(server, "models", "show", "listed@champion").stdout
    assert by_alias["sha256"][:12] in one_table and by_number["sha256"][:12] not in one_table

    assert "not found" in cli(server, "models", "show", "no-such-model", code=2).stderr
    assert "not found" in cli(server, "models", "show", "listed@9", code=2).stderr
    assert "no alias 'candidate'" in cli(server, "models", "show", "listed@candidate", code=2).stderr


def test_alias_moves_are_kept_as_history(server: ServerProcess, files: Files) -> None:
    cli(server, "models", "push", files.lr1, "--name", "moved")
    cli(server, "models", "push", files.lr2, "--name", "moved")
    cli(server, "alias", "set", "moved", "champion", "1")
    out = cli(server, "alias", "set", "moved", "champion", "2", "--reason", "better recall").stdout
    assert "champion of moved: v1 → v2" in out
    data = cli_json(server, "alias", "set", "moved", "candidate", "1")
    assert data == {"model": "moved", "alias": "candidate", "version": 1, "previous": None}
    shown = cli_json(server, "models", "show", "moved")
    assert isinstance(shown, dict)
    assert shown["aliases"] == {"champion": 2, "previous": 1, "candidate": 1}
    history = [(h["alias"], h["version"], h["previous"]) for h in shown["alias_history"]]
    assert history == [
        ("champion", 1, None),
        ("champion", 2, 1),
        ("previous", 1, None),  # the old champion is kept as `previous`
        ("candidate", 1, None),
    ]
    assert all(h["actor"] == "cli" for h in shown["alias_history"])
    missing = cli(server, "alias", "set", "moved", "champion", "7", code=2)
    assert "not found" in missing.stderr
    assert cli_json(server, "models", "show", "moved@champion")["version"] == 2  # type: ignore[index]
    response = infer(server, "moved", "input", breast_cancer()[0][:2], "FP64")
    assert response.headers["x-changeover-version"] == "2"


def test_a_first_alias_is_not_reported_as_moved_from_vnone(server: ServerProcess, files: Files) -> None:
    cli(server, "models", "push", files.lr1, "--name", "fresh-alias")
    out = cli(server, "alias", "set", "fresh-alias", "champion", "1").stdout
    assert "vNone" not in out
    messages = [e["message"] for e in cli_json(server, "events", "fresh-alias")]  # type: ignore[union-attr]
    assert not any("vNone" in m for m in messages)


def test_events_show_pushes_alias_moves_and_refusals(server: ServerProcess, files: Files) -> None:
    cli(server, "models", "push", files.lr1, "--name", "audited")
    cli(server, "models", "push", files.tree, "--name", "audited", code=2)
    cli(server, "alias", "set", "audited", "champion", "1", "--reason", "first release")
    events = cli_json(server, "events", "audited")
    assert isinstance(events, list)
    kinds = [e["kind"] for e in events]
    assert kinds[:3] == ["push", "refused", "alias"]  # the refused push is the model's event too
    assert all(e["model"] == "audited" for e in events)
    alias = events[2]
    assert alias["actor"] == "cli" and "first release" in alias["message"]
    assert alias["evidence"] == {"alias": "champion", "version": 1, "previous": None}
    everything = cli_json(server, "events", "--limit", "1000")
    assert isinstance(everything, list)
    refused = [e for e in everything if e["kind"] == "refused" and e["evidence"].get("model") == "audited"]
    assert refused and "sklearn.tree._tree.Tree" in refused[0]["message"]
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids)
    table = cli(server, "events", "audited").stdout
    assert "push" in table and "alias" in table and "first release" in table
    assert len(cli_json(server, "events", "--limit", "2")) == 2  # type: ignore[arg-type]


def test_events_of_a_model_include_its_refused_pushes(server: ServerProcess, files: Files) -> None:
    cli(server, "models", "push", files.tree, "--name", "refusals", code=2)
    cli(server, "models", "push", files.pkl, "--name", "refusals", code=2)
    kinds = [e["kind"] for e in cli_json(server, "events", "refusals")]  # type: ignore[union-attr]
    assert kinds.count("refused") == 2


def test_status_shows_every_model_with_its_champion_and_generation(server: ServerProcess, files: Files) -> None:
    cli(server, "models", "push", files.lr1, "--name", "stat")
    cli(server, "models", "push", files.lr2, "--name", "stat")
    cli(server, "alias", "set", "stat", "champion", "1")
    deadline = time.monotonic() + 10
    while True:
        status = cli_json(server, "status")
        assert isinstance(status, dict)
        row = next(m for m in status["models"] if m["model"] == "stat")
        if row["policy"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row["aliases"] == {"champion": 1} and row["versions"] == 2
    assert row["policy"]["champion"] == 1 and row["policy"]["generation"] >= 1
    assert status["gateway"]["loaded"] and status["controller"]["leading"] is True
    table = cli(server, "status").stdout
    line = next(ln for ln in table.splitlines() if " stat " in ln)
    assert "champion=v1" in line and "v1: 100%" in line
