"""The MLflow road end to end, against a real MLflow tracking server (SQLite backend) and a real
``changeover serve``: log scikit-learn, ONNX and pyfunc models, register them, set aliases,
``models push models:/NAME@ALIAS``, infer through the gateway, check signature and lineage; then
``follow-registry`` sees an alias move, starts a rollout, and tags its outcome on the MLflow version.

One MLflow server and one changeover server for the module: the tests run in order and share
the registered models."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from changeover.cli.client import ApiError, Client
from changeover.cli.registry_follow import RegistryFollower, push_mlflow
from changeover.errors import InvalidRequest
from mlflowserver import MlflowServer
from serverproc import TOKEN, ServerProcess, retry_loading

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")

from mlflow.models import infer_signature  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

X, Y = load_iris(return_X_y=True)
ROWS = X[:6]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """changeover's server, with MLFLOW_TRACKING_URI for its CLI; both servers start at once."""
    tracking = MlflowServer(tmp_path_factory.mktemp("mlflow")).launch()
    changeover = ServerProcess(tmp_path_factory.mktemp("home"), env={"MLFLOW_TRACKING_URI": tracking.url})
    try:
        changeover.start(timeout=90)
        tracking.wait()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", tracking.url)
            mlflow.set_tracking_uri(tracking.url)
            yield changeover
    finally:
        changeover.stop()
        tracking.stop()


def log_sklearn(name: str, c: float, fmt: str) -> tuple[LogisticRegression, Any]:
    """A logistic regression on iris, logged and registered as ``name`` in format ``fmt``."""
    model = LogisticRegression(C=c, max_iter=500).fit(X, Y)
    with mlflow.start_run():
        # pip_requirements given: MLflow would otherwise load the model in a subprocess to infer them
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(X, model.predict(X)),
                                        registered_model_name=name, serialization_format=fmt,
                                        pip_requirements=["scikit-learn"])
    return model, info


def infer(server: ServerProcess, model: str, rows: np.ndarray, version: int | None = None,
          name: str = "input", datatype: str = "FP64") -> dict[str, Any]:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": name, "datatype": datatype, "shape": list(rows.shape),
                        "data": rows.reshape(-1).tolist()}]}
    with server.client() as http:
        r = retry_loading(lambda: http.post(path, json=body))
    assert r.status_code == 200, r.text
    return {o["name"]: o["data"] for o in r.json()["outputs"]}


def api(server: ServerProcess) -> Client:
    """The CLI's client, in this process: the CLI itself runs where what it prints is checked
    (each run imports MLflow: seconds)."""
    return Client(url=server.url, token=TOKEN)


def follower(server: ServerProcess, spec: dict[str, Any], **kwargs: Any) -> RegistryFollower:
    from changeover.registry.mlflow_source import MlflowSource

    return RegistryFollower(source=MlflowSource(), api=api(server), registered="iris", alias="challenger",
                            spec=spec, model="iris", **kwargs)


SPEC = {"model": "iris", "candidate": "challenger", "watch": "1s"}


def version(server: ServerProcess, model: str, number: int) -> dict[str, Any]:
    with server.client() as http:
        r = http.get(f"/api/models/{model}/versions/{number}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_pickled_flavour_needs_trust_then_serves_with_its_signature_and_lineage(server: ServerProcess) -> None:
    model, info = log_sklearn("iris", 1.0, "cloudpickle")
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("iris", "champion", info.registered_model_version)
    mv = client.get_model_version("iris", info.registered_model_version)

    with pytest.raises(ApiError) as refused:  # the registry's own trust check, as for a .pkl
        push_mlflow(api(server), "models:/iris@champion", name=None, labels={}, trust=False)
    assert "iris-v1 is a pickle: loading it runs arbitrary code" in str(refused.value) and "--trust" in str(
        refused.value)
    with server.client() as http:
        assert http.get("/api/models/iris").status_code == 404  # nothing stored

    pushed = server.cli("models", "push", "models:/iris@champion", "--trust", check=True)
    assert "pushed iris v1 (pickle" in pushed.stdout and mv.run_id in pushed.stdout
    record = version(server, "iris", 1)
    assert record["trusted"] is True
    assert record["signature"]["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert record["signature"]["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]}]
    labels = record["labels"]
    assert labels["mlflow.run_id"] == mv.run_id and labels["mlflow.source"] == mv.source
    assert (labels["mlflow.model"], labels["mlflow.version"], labels["mlflow.flavor"]) == ("iris", "1", "sklearn")
    assert labels["mlflow.uri"] == "models:/iris@champion" and labels["mlflow.tracking_uri"] == server.env[
        "MLFLOW_TRACKING_URI"]

    with server.client() as http:
        assert http.put("/api/models/iris/aliases/champion", json={"version": 1}).status_code == 200
    assert infer(server, "iris", ROWS)["label"] == model.predict(ROWS).tolist()


def test_skops_flavour_then_follow_registry_rolls_the_alias_out_and_tags_the_outcome(
        server: ServerProcess, tmp_path: Path) -> None:
    model, info = log_sklearn("iris", 0.05, "skops")
    number = info.registered_model_version
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("iris", "challenger", number)
    spec = tmp_path / "rollout.yaml"
    spec.write_text("model: iris\ncandidate: challenger\nwatch: 1s\n")
    follow = ("follow-registry", "iris", "--alias", "challenger", "--spec", str(spec), "--once")

    started = server.cli(*follow, check=True)
    tags = client.get_model_version("iris", number).tags
    assert tags["changeover.version"] == "2" and tags["changeover.rollout"].isdigit(), started.stdout
    rid = int(tags["changeover.rollout"])
    assert f"rollout {rid} against v1" in started.stdout
    record = version(server, "iris", 2)
    assert (record["runtime"], record["trusted"]) == ("skops", False)  # a native flavour: no trust needed
    assert record["labels"]["mlflow.version"] == number

    def ended() -> Any:
        with server.client() as http:
            r = http.get(f"/api/rollouts/{rid}").json()
        return r if r["status"]["phase"] in ("promoted", "rolled_back", "aborted", "failed") else None

    assert wait_until(ended, "the rollout's end")["status"]["phase"] == "promoted"
    assert client.get_model_version("iris", number).tags.get("changeover.outcome") is None  # not until it polls
    assert follower(server, SPEC).poll() == [f"iris v{number}: rollout {rid} promoted; tagged in MLflow"]
    tags = client.get_model_version("iris", number).tags
    assert (tags["changeover.outcome"], tags["changeover.rollout"]) == ("promoted", str(rid))
    assert infer(server, "iris", ROWS)["label"] == model.predict(ROWS).tolist()  # v2 is the champion now

    assert follower(server, SPEC).poll() == []  # nothing new: no second rollout of the same version
    with server.client() as http:
        assert len(http.get("/api/rollouts", params={"model": "iris"}).json()) == 1


def test_follow_registry_tags_a_refused_version_and_does_not_retry_it(server: ServerProcess) -> None:
    _, info = log_sklearn("iris", 0.5, "pickle")  # a pickle, and the follower has no --trust
    number = info.registered_model_version
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("iris", "challenger", number)
    said = follower(server, SPEC).poll()
    tags = client.get_model_version("iris", number).tags
    assert tags["changeover.outcome"] == "refused" and "is a pickle" in tags["changeover.message"], said
    assert "changeover.rollout" not in tags and said[0].startswith(f"iris v{number} (challenger): refused: push refused")
    assert follower(server, SPEC).poll() == []
    with server.client() as http:
        assert [v["version"] for v in http.get("/api/models/iris").json()["versions"]] == [1, 2]


def test_onnx_flavour_is_served_by_the_onnx_runtime(server: ServerProcess, tmp_path: Path) -> None:
    pytest.importorskip("skl2onnx")
    import mlflow.onnx
    import onnx

    from modelfiles import breast_cancer, onnx_mlp

    graph = onnx.load(str(onnx_mlp(tmp_path / "mlp.onnx")))
    with mlflow.start_run():
        mlflow.onnx.log_model(graph, name="model", registered_model_name="mlp", pip_requirements=["onnx"])
    push_mlflow(api(server), "models:/mlp/1", name=None, labels={}, trust=False)
    record = version(server, "mlp", 1)
    assert (record["runtime"], record["trusted"], record["labels"]["mlflow.flavor"]) == ("onnx", False, "onnx")
    assert [t["name"] for t in record["signature"]["inputs"]] == ["features"]
    x, _ = breast_cancer()
    out = infer(server, "mlp", x[:3].astype(np.float32), version=1, name="features", datatype="FP32")
    assert set(out) == {"label", "probabilities"} and len(out["label"]) == 3


MODEL_CODE = '''\
import mlflow
import numpy as np


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.asarray(model_input)[:, 0] * 2.0


mlflow.models.set_model(Doubler())
'''


def test_a_pyfunc_python_model_is_code_needing_trust_then_the_mlflow_runtime_serves_it(
        server: ServerProcess, tmp_path: Path) -> None:
    code = tmp_path / "doubler.py"
    code.write_text(MODEL_CODE)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=str(code), registered_model_name="doubler",
                                signature=infer_signature(X, X[:, 0] * 2.0), pip_requirements=["numpy"])
    with pytest.raises(ApiError, match="runs arbitrary code") as refused:
        push_mlflow(api(server), "models:/doubler/1", name=None, labels={}, trust=False)
    assert refused.value.status == 409 and not (refused.value.body or {}).get("conflict")
    pushed = push_mlflow(api(server), "models:/doubler/1", name=None, labels={"team": "search"}, trust=True)
    assert pushed["labels"]["team"] == "search" and pushed["labels"]["mlflow.model"] == "doubler"
    record = version(server, "doubler", 1)
    assert (record["runtime"], record["trusted"], record["labels"]["mlflow.flavor"]) == (
        "mlflow", True, "python_function")
    assert record["signature"]["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    assert infer(server, "doubler", ROWS, version=1)["prediction"] == (ROWS[:, 0] * 2.0).tolist()


def test_a_local_mlflow_model_folder_is_pushed_with_its_signature(server: ServerProcess, tmp_path: Path) -> None:
    model = LogisticRegression(max_iter=500).fit(X, Y)
    folder = tmp_path / "saved-iris"
    mlflow.sklearn.save_model(model, str(folder), signature=infer_signature(X, model.predict(X)),
                              serialization_format="skops", pip_requirements=["scikit-learn"])
    with pytest.raises(InvalidRequest, match="--name"):
        push_mlflow(api(server), str(folder), name=None, labels={}, trust=False)
    push_mlflow(api(server), str(folder), name="local-iris", labels={}, trust=False)
    record = version(server, "local-iris", 1)
    assert record["runtime"] == "skops" and record["labels"]["mlflow.uri"] == str(folder.resolve())
    assert infer(server, "local-iris", ROWS, version=1)["label"] == model.predict(ROWS).tolist()


def test_a_skops_flavour_with_types_skops_does_not_trust_takes_them_by_name(
        server: ServerProcess, tmp_path: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y)
    folder = tmp_path / "saved-tree"
    # the MLmodel vouches for the type; changeover does not read that (a model cannot trust itself)
    mlflow.sklearn.save_model(tree, str(folder), signature=infer_signature(X, tree.predict(X)),
                              serialization_format="skops", pip_requirements=["scikit-learn"],
                              skops_trusted_types=["sklearn.tree._tree.Tree"])
    with pytest.raises(ApiError, match="--trust-type sklearn.tree._tree.Tree"):
        push_mlflow(api(server), str(folder), name="tree", labels={}, trust=False)
    push_mlflow(api(server), str(folder), name="tree", labels={}, trust=False,
                trust_types=["sklearn.tree._tree.Tree"])
    record = version(server, "tree", 1)
    assert (record["runtime"], record["trusted"], record["trusted_types"]) == (
        "skops", False, ["sklearn.tree._tree.Tree"])
    assert infer(server, "tree", ROWS, version=1)["label"] == tree.predict(ROWS).tolist()


def test_a_models_uri_that_is_not_there_is_exit_2_naming_it(server: ServerProcess) -> None:
    result = server.cli("models", "push", "models:/iris@no-such-alias")
    assert result.returncode == 2 and "models:/iris@no-such-alias" in result.stderr, result.stderr
    with pytest.raises(InvalidRequest, match="models:/NAME@ALIAS or models:/NAME/VERSION"):
        push_mlflow(api(server), "models:/iris/latest", name=None, labels={}, trust=False)


def test_importing_changeover_does_not_import_mlflow() -> None:
    code = ("import sys, changeover, changeover.cli.main, changeover.registry.service; "
            "sys.exit('mlflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], env=os.environ.copy(), timeout=120).returncode == 0
