"""Content-addressed artifacts, checked on every load: a tampered artifact is refused, logged,
and never takes traffic from the version that serves."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from changeover.cli.client import Client
from changeover.errors import ArtifactMissing, ArtifactTampered
from changeover.registry.artifacts import ArtifactStore, file_sha256, folder_sha256, sha256_of
from changeover.registry.service import Registry
from changeover.store.store import Store
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, retry_loading

X = np.array([[1.0, 2.0], [3.0, 4.0]])
BODY = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 2], "data": X.reshape(-1).tolist()}]}


def folder_model(root: Path, name: str, factor: float) -> Path:
    return python_model(root / name, f"return inputs['x'].sum(axis=1) * {factor}")


# ---- the artifact store -------------------------------------------------------------------


def test_files_are_stored_under_their_sha256(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"weights" * 100)
    store = ArtifactStore(tmp_path / "artifacts")
    sha, relative = store.put(source)
    assert sha == file_sha256(source) == sha256_of(source)
    assert relative == f"sha256/{sha[:2]}/{sha}.onnx"
    assert store.path(relative).read_bytes() == source.read_bytes()
    assert store.put(source) == (sha, relative)  # idempotent
    assert [p.name for p in (tmp_path / "artifacts").rglob("*") if p.is_file()] == [f"{sha}.onnx"]
    assert store.verify(relative, sha) == store.path(relative)


def test_folders_are_stored_whole_and_their_checksum_covers_names_and_bytes(tmp_path: Path) -> None:
    folder = folder_model(tmp_path, "m", 2)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "predictor.cpython-311.pyc").write_bytes(b"junk")
    sha = folder_sha256(folder)
    (folder / "__pycache__" / "predictor.cpython-311.pyc").write_bytes(b"other junk")
    assert folder_sha256(folder) == sha  # caches do not count
    store = ArtifactStore(tmp_path / "artifacts")
    got, relative = store.put(folder)
    assert got == sha and relative == f"sha256/{sha[:2]}/{sha}"
    stored = store.path(relative)
    assert sorted(p.name for p in stored.iterdir()) == ["model.yaml", "predictor.py"]
    (folder / "notes.txt").write_text("x")
    assert folder_sha256(folder) != sha  # a new file changes it
    (folder / "notes.txt").rename(folder / "notes2.txt")
    with_notes = folder_sha256(folder)
    (folder / "notes2.txt").rename(folder / "notes3.txt")
    assert folder_sha256(folder) != with_notes  # so does a rename


@pytest.mark.parametrize("how", ["overwrite", "append", "delete"])
def test_verify_refuses_a_changed_or_missing_artifact(tmp_path: Path, how: str) -> None:
    source = tmp_path / "a.skops"
    source.write_bytes(b"0123456789")
    store = ArtifactStore(tmp_path / "artifacts")
    sha, relative = store.put(source)
    target = store.path(relative)
    if how == "overwrite":
        target.write_bytes(b"9876543210")
    elif how == "append":
        target.write_bytes(target.read_bytes() + b"\x00")
    else:
        target.unlink()
    # a missing artifact is said as missing (naming the store), never as tampered
    with pytest.raises(ArtifactMissing if how == "delete" else ArtifactTampered) as info:
        store.verify(relative, sha)
    assert info.value.expected == sha
    assert not (how == "delete" and isinstance(info.value, ArtifactTampered))
    assert ("missing" if how == "delete" else "does not match its checksum") in str(info.value)
    if how == "delete":
        assert "the local folder" in str(info.value)


def test_the_registry_logs_a_tampered_load(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        registry = Registry(store, ArtifactStore(tmp_path / "artifacts"))
        record, created = registry.push(folder_model(tmp_path, "m", 3), name="m", trust=True)
        assert created
        model = registry.load(record)
        assert model.predict({"x": X})["y"].tolist() == [9.0, 21.0]
        model.close()
        predictor = tmp_path / "artifacts" / record.artifact / "predictor.py"
        predictor.write_text(predictor.read_text().replace("* 3", "* 300"))
        with pytest.raises(ArtifactTampered):
            registry.load(record)
        tampered = [e for e in store.events("m") if e["kind"] == "tampered"]
        assert len(tampered) == 1
        assert tampered[0]["evidence"]["version"] == 1
        assert tampered[0]["evidence"]["expected"] == record.sha256
        assert tampered[0]["evidence"]["got"] != record.sha256
    finally:
        store.close()


# ---- through a real server ----------------------------------------------------------------


def push(server: ServerProcess, path: Path, name: str) -> dict:
    """Push as the CLI does (the same client code, in-process)."""
    client = Client(url=server.url, token=TOKEN)
    try:
        return client.push(path, name=name, labels={}, runtime=None, trust=True)  # python folders: code
    finally:
        client.close()


def artifact_path(server: ServerProcess, model: str, version: int) -> Path:
    with server.client() as http:
        record = http.get(f"/api/models/{model}/versions/{version}").raise_for_status().json()
    matches = list((server.home / "artifacts").rglob(f"{record['sha256']}*"))
    assert len(matches) == 1, matches
    return matches[0]


def wait_for_champion(http: httpx.Client, model: str, version: int, timeout: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = http.post(f"/v2/models/{model}/infer", json=BODY)
        if response.headers.get("x-changeover-version") == str(version) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def events_of(http: httpx.Client, kind: str) -> list[dict]:
    return [e for e in http.get("/api/events", params={"limit": 1000}).raise_for_status().json() if e["kind"] == kind]


RECORDS: dict[tuple[str, int], dict] = {}  # (model, version) -> its record, as the push answered


@dataclass
class Scenario:
    home: Path
    first: ServerProcess
    second: ServerProcess | None = None


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """One home, served first by one server process and then by a fresh one."""
    root = tmp_path_factory.mktemp("tamper")
    first = ServerProcess(root / "home").start()
    state = Scenario(root / "home", first)
    try:
        for model, factors in (("guarded", (1, 2, 3, 4)), ("warmed", (5, 6))):
            for version, factor in enumerate(factors, start=1):
                record = push(first, folder_model(root, f"{model}{factor}", factor), model)
                assert record["version"] == version
                RECORDS[(model, version)] = record
        yield state
    finally:
        first.stop()
        if state.second is not None:
            state.second.stop()


@pytest.fixture(scope="module")
def restarted(scenario: Scenario) -> ServerProcess:
    """The first server stops; artifacts change on disk; a fresh server starts on the same home."""
    scenario.first.stop()
    missing = artifact_path_of(scenario.home, RECORDS[("guarded", 4)])
    shutil.rmtree(missing)
    warm = artifact_path_of(scenario.home, RECORDS[("warmed", 2)])
    (warm / "predictor.py").write_text((warm / "predictor.py").read_text() + "\n# edited\n")
    scenario.second = ServerProcess(scenario.home).start()
    return scenario.second


def artifact_path_of(home: Path, record: dict) -> Path:
    matches = list((home / "artifacts").rglob(f"{record['sha256']}*"))
    assert len(matches) == 1, matches
    return matches[0]


def test_a_tampered_version_is_refused_logged_and_the_champion_keeps_serving(scenario: Scenario) -> None:
    server = scenario.first
    with server.client() as http:
        assert http.put("/api/models/guarded/aliases/champion", json={"version": 1}).status_code == 200
        served = wait_for_champion(http, "guarded", 1)
        assert served.status_code == 200 and served.json()["outputs"][0]["data"] == [3.0, 7.0]

        # v2's bytes change on disk after the push
        predictor = artifact_path(server, "guarded", 2) / "predictor.py"
        predictor.write_text(predictor.read_text().replace("* 2", "* -1"))

        refused = http.put("/api/models/guarded/aliases/champion", json={"version": 2})
        assert refused.status_code >= 400
        assert "checksum" in refused.json()["error"]
        assert http.get("/api/models/guarded").json()["aliases"]["champion"] == 1
        tampered = events_of(http, "tampered")
        assert [e["evidence"]["version"] for e in tampered] == [2]
        assert tampered[0]["model"] == "guarded"
        assert tampered[0]["evidence"]["expected"] == RECORDS[("guarded", 2)]["sha256"]
        assert any(e["model"] == "guarded" and e["evidence"]["version"] == 2 for e in events_of(http, "refused"))

        pinned = retry_loading(lambda: http.post("/v2/models/guarded/versions/2/infer", json=BODY))
        assert pinned.status_code >= 400 and pinned.status_code != 422
        assert "checksum" in pinned.json()["error"]
        assert "x-request-id" in pinned.headers
        for _ in range(5):
            still = http.post("/v2/models/guarded/infer", json=BODY)
            assert still.status_code == 200
            assert still.headers["x-changeover-version"] == "1"
            assert still.json()["outputs"][0]["data"] == [3.0, 7.0]

        # an intact version swaps in and out as usual (v3 stays warm as `previous`)
        assert http.put("/api/models/guarded/aliases/champion", json={"version": 3}).status_code == 200
        assert wait_for_champion(http, "guarded", 3).json()["outputs"][0]["data"] == [9.0, 21.0]
        assert http.put("/api/models/guarded/aliases/champion", json={"version": 1}).status_code == 200
        assert wait_for_champion(http, "guarded", 1).status_code == 200

        # `warmed`: champion v1, with v2 kept warm as `previous`
        assert http.put("/api/models/warmed/aliases/champion", json={"version": 2}).status_code == 200
        assert http.put("/api/models/warmed/aliases/champion", json={"version": 1}).status_code == 200
        assert wait_for_champion(http, "warmed", 1).status_code == 200
        assert http.get("/api/models/warmed").json()["aliases"] == {"champion": 1, "previous": 2}


def test_a_fresh_server_checks_every_checksum_again(scenario: Scenario, restarted: ServerProcess) -> None:
    with restarted.client() as http:
        first = wait_for_champion(http, "guarded", 1)
        assert first.status_code == 200 and first.json()["outputs"][0]["data"] == [3.0, 7.0]
        before = len(events_of(http, "tampered"))
        for version, why in ((2, "checksum"), (4, "missing")):
            refused = http.put("/api/models/guarded/aliases/champion", json={"version": version})
            assert refused.status_code >= 400, refused.text
            assert why in refused.json()["error"]
        assert http.get("/api/models/guarded").json()["aliases"]["champion"] == 1
        assert len(events_of(http, "tampered")) == before + 1  # v2's changed bytes; v4 is missing, no alarm
        assert [e["evidence"]["version"] for e in events_of(http, "missing") if e["model"] == "guarded"] == [4]
        after = http.post("/v2/models/guarded/infer", json=BODY)
        assert after.status_code == 200 and after.headers["x-changeover-version"] == "1"
        assert http.get("/v2/health/ready").status_code == 200


def test_a_tampered_warm_version_does_not_stop_the_champion_on_restart(restarted: ServerProcess) -> None:
    with restarted.client() as http:
        response = wait_for_champion(http, "warmed", 1, timeout=5)
        assert any(e["model"] == "warmed" for e in events_of(http, "tampered"))
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [15.0, 35.0]
