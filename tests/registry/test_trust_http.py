"""Trust against real `changeover serve` processes (issue 13): a python folder is code, refused
unless pushed with --trust or from a folder the operator allow-listed; a skops file's untrusted
types are trusted by name (--trust-type, CHANGEOVER_SKOPS_TRUSTED_TYPES) and recorded on the
version; a python version recorded untrusted never loads; events say what was trusted and why.

The CLI runs in-process (Typer's runner over real HTTP), as in test_registry.py."""

from __future__ import annotations

import io
import operator
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio
from click.testing import Result
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier
from typer.testing import CliRunner

from changeover.cli import main as cli_main
from changeover.registry.artifacts import ArtifactStore
from changeover.registry.manifest import read_manifest
from changeover.store.store import Store
from modelfiles import breast_cancer, python_model, skops_classifiers, v2_request
from serverproc import ServerProcess, retry_loading

TREE = "sklearn.tree._tree.Tree"
NEG = "_operator.neg"


def cli(server: ServerProcess, *args: object, code: int = 0) -> Result:
    env = {k: v for k, v in server.env.items() if k.startswith("CHANGEOVER_")}
    result = CliRunner().invoke(cli_main.app, [str(a) for a in args], env=env)
    assert result.exit_code == code, f"exited {result.exit_code}, not {code}:\n{result.stdout}\n{result.stderr}"
    return result


def said(result: Result) -> str:
    return " ".join(result.stderr.split())  # rich wraps long lines


def push_event(server: ServerProcess, model: str) -> dict:
    with server.client() as http:
        return [e for e in http.get("/api/events", params={"model": model}).json() if e["kind"] == "push"][-1]


def tarball(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for item in sorted(folder.rglob("*")):
            archive.add(item, arcname=item.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def answer(server: ServerProcess, model: str, x: np.ndarray) -> httpx.Response:
    with server.client() as http:
        assert http.put(f"/api/models/{model}/aliases/champion", json={"version": 1}).status_code == 200
        return retry_loading(lambda: http.post(f"/v2/models/{model}/versions/1/infer", json=v2_request(x, "x")))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trust-models")
    _, tree = skops_classifiers(root / "skops")
    x, y = breast_cancer()
    mixed = root / "mixed.skops"  # a tree behind a function skops does not trust either
    sio.dump(make_pipeline(FunctionTransformer(operator.neg), DecisionTreeClassifier(max_depth=2)).fit(x, y), mixed)
    return {
        "tree": tree,
        "mixed": mixed,
        "double": python_model(root / "double", "return inputs['x'].sum(axis=1) * 2"),
        "allowed": python_model(root / "allowed" / "triple", "return inputs['x'].sum(axis=1) * 3"),
        "impostor": python_model(root / "impostor" / "triple", "return inputs['x'].sum(axis=1) * -1"),
    }


def serving(home: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    server = ServerProcess(home, env=env).start(timeout=90)  # a start-up on a busy shared machine
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serving(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[ServerProcess]:
    env = {"CHANGEOVER_TRUSTED_FOLDERS": str(models["allowed"].parent), "CHANGEOVER_SKOPS_TRUSTED_TYPES": TREE}
    yield from serving(tmp_path_factory.mktemp("home-configured"), env)


# ---- python folders -----------------------------------------------------------------------


def test_a_python_folder_is_refused_without_trust_over_the_api_and_the_cli(
        plain: ServerProcess, models: dict[str, Path]) -> None:
    with plain.client() as http:
        refused = http.post("/api/models/code/versions", params={"filename": "double.tar.gz", "folder": "true"},
                            content=tarball(models["double"]))
        assert 400 <= refused.status_code < 500, refused.text
        error = refused.json()["error"]
        assert "double is a python-runtime folder" in error and "code that runs inside the server" in error
        assert "--trust only if you trust its author" in error and "CHANGEOVER_TRUSTED_FOLDERS" in error
        assert http.get("/api/models/code").status_code == 404
        events = http.get("/api/events", params={"model": "code"}).json()
        assert [e["kind"] for e in events] == ["refused"]
    result = cli(plain, "models", "push", models["double"], "--name", "code", code=2)
    assert "python-runtime folder" in said(result) and "--trust only if you trust its author" in said(result)

    pushed = cli(plain, "models", "push", models["double"], "--name", "code", "--trust", "--json")
    assert '"trusted": true' in pushed.stdout
    event = push_event(plain, "code")
    assert event["message"].endswith("; trusted: whole folder (--trust by cli)")
    assert (event["evidence"]["trusted"], event["evidence"]["trust"]) == (True, "--trust")
    response = answer(plain, "code", np.array([[1.0, 2.0]]))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [6.0]


def test_a_python_version_recorded_untrusted_does_not_load_in_the_server(
        plain: ServerProcess, models: dict[str, Path]) -> None:
    """As a version pushed before this rule: the champion stays, and pinned inference fails."""
    folder = models["double"]
    sha, relative = ArtifactStore(plain.home / "artifacts").put(folder)
    store = Store(plain.env.get("CHANGEOVER_STORE") or f"sqlite:///{(plain.home / 'store.db').resolve()}")
    try:
        signature = read_manifest(folder).signature
        assert signature is not None
        store.add_version(model="legacy", sha256=sha, runtime="python", artifact=relative, signature=signature,
                          labels={}, trusted=False, source="old", actor="test")
    finally:
        store.close()
    with plain.client() as http:
        moved = http.put("/api/models/legacy/aliases/champion", json={"version": 1})
        assert 400 <= moved.status_code < 500, moved.text
        assert "legacy v1 is a python-runtime folder that was not pushed with --trust" in moved.json()["error"]
        pinned = retry_loading(lambda: http.post("/v2/models/legacy/versions/1/infer",
                                                 json=v2_request(np.array([[1.0, 2.0]]), "x")))
        assert pinned.status_code >= 400 and "not pushed with --trust" in pinned.text, pinned.text
        assert http.get("/api/models/legacy").json()["aliases"] == {}
    # pushed again with --trust, the same bytes: trust recorded on v1, which now loads
    again = cli(plain, "models", "push", folder, "--name", "legacy", "--trust", "--json")
    assert '"created": false' in again.stdout and '"trusted": true' in again.stdout
    response = answer(plain, "legacy", np.array([[1.0, 1.0]]))
    assert response.status_code == 200, response.text
    with plain.client() as http:
        trust = [e for e in http.get("/api/events", params={"model": "legacy"}).json() if e["kind"] == "trust"]
    assert [e["message"] for e in trust] == ["legacy v1: trusted: whole folder (--trust by cli)"]


def test_an_allow_listed_folder_needs_no_trust_and_a_claimed_one_is_checked(
        configured: ServerProcess, plain: ServerProcess, models: dict[str, Path]) -> None:
    folder = models["allowed"]
    pushed = cli(configured, "models", "push", folder, "--name", "listed", "--json")
    assert '"trusted": true' in pushed.stdout
    event = push_event(configured, "listed")
    assert event["message"].endswith(
        f"; trusted: folder allow-listed by CHANGEOVER_TRUSTED_FOLDERS ({folder.parent.resolve()})")
    assert event["evidence"]["trust"] == "CHANGEOVER_TRUSTED_FOLDERS"
    response = answer(configured, "listed", np.array([[1.0, 2.0]]))
    assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [9.0], response.text

    # the allow-list is the operator's, on the server: the same folder to a server without it is refused
    assert "python-runtime folder" in said(cli(plain, "models", "push", folder, "--name", "listed", code=2))
    # a folder outside it is refused, and so is other code that claims to come from it
    cli(configured, "models", "push", models["impostor"], "--name", "impostor", code=2)
    with configured.client() as http:
        claimed = http.post("/api/models/impostor/versions", content=tarball(models["impostor"]),
                            params={"filename": "triple.tar.gz", "folder": "true", "origin": str(folder.resolve())})
        assert 400 <= claimed.status_code < 500 and "python-runtime folder" in claimed.json()["error"], claimed.text
        assert http.get("/api/models/impostor").status_code == 404


# ---- skops types --------------------------------------------------------------------------


def test_a_tree_is_trusted_by_its_type_and_loads_with_exactly_it(plain: ServerProcess, models: dict[str, Path]) -> None:
    refused = said(cli(plain, "models", "push", models["tree"], "--name", "tree", code=2))
    assert f"skops does not trust: {TREE};" in refused and f"--trust-type {TREE}" in refused
    assert "pickle" not in refused.lower()

    pushed = cli(plain, "models", "push", models["tree"], "--name", "tree", "--trust-type", TREE, "--json")
    with plain.client() as http:
        record = http.get("/api/models/tree/versions/1").json()
    assert '"version": 1' in pushed.stdout
    assert (record["trusted"], record["trusted_types"]) == (False, [TREE])
    event = push_event(plain, "tree")
    assert event["message"].endswith(f"; trusted types {TREE} (--trust-type by cli)")
    assert "pickle" not in event["message"].lower() and "TRUSTED" not in event["message"]
    assert (event["evidence"]["trusted_types"], event["evidence"]["trust"]) == ([TREE], "--trust-type")
    x, y = breast_cancer()
    with plain.client() as http:
        assert http.put("/api/models/tree/aliases/champion", json={"version": 1}).status_code == 200
        response = retry_loading(lambda: http.post("/v2/models/tree/versions/1/infer", json=v2_request(x[:10])))
    assert response.status_code == 200, response.text
    expected = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y).predict(x[:10])
    assert response.json()["outputs"][0]["data"] == expected.tolist()


def test_a_type_left_untrusted_is_named_and_refused(plain: ServerProcess, configured: ServerProcess,
                                                    models: dict[str, Path]) -> None:
    for server, flags in ((plain, ("--trust-type", TREE)), (configured, ())):
        refused = said(cli(server, "models", "push", models["mixed"], "--name", "mixed", *flags, code=2))
        assert f"skops does not trust: {NEG};" in refused and f"--trust-type {NEG}" in refused
        assert f"--trust-type {TREE}" not in refused
    cli(plain, "models", "push", models["mixed"], "--name", "mixed", "--trust-type", TREE, "--trust-type", NEG)
    with plain.client() as http:
        assert http.get("/api/models/mixed/versions/1").json()["trusted_types"] == [NEG, TREE]
        # trust types name skops types only
        wrong = http.post("/api/models/typed/versions", content=tarball(models["double"]),
                          params={"filename": "double.tar.gz", "folder": "true", "trust": "true", "trust_type": TREE})
    assert wrong.status_code == 422 and wrong.json()["field"] == "trust_type", wrong.text


def test_the_servers_skops_setting_trusts_its_types_and_the_event_says_so(
        configured: ServerProcess, models: dict[str, Path]) -> None:
    cli(configured, "models", "push", models["tree"], "--name", "tree")
    with configured.client() as http:
        record = http.get("/api/models/tree/versions/1").json()
    assert (record["trusted"], record["trusted_types"]) == (False, [TREE])
    assert push_event(configured, "tree")["message"].endswith(f"; trusted types {TREE} (CHANGEOVER_SKOPS_TRUSTED_TYPES)")
    x, _ = breast_cancer()
    with configured.client() as http:
        assert http.put("/api/models/tree/aliases/champion", json={"version": 1}).status_code == 200
        response = retry_loading(lambda: http.post("/v2/models/tree/versions/1/infer", json=v2_request(x[:3])))
    assert response.status_code == 200, response.text
