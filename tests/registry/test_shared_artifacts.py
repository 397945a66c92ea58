"""Shared artifacts (CHANGEOVER_ARTIFACTS): blobs in the store's database or in object storage,
so a replica with its own home loads what another replica pushed. Checked on every load; a
blob the shared store lacks is "missing", never "tampered".

The object storage is a real S3-compatible server (moto in server mode, on loopback)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from changeover.cli.client import Client
from changeover.errors import ArtifactMissing, ArtifactTampered
from changeover.registry.artifacts import ArtifactStore, file_sha256, folder_sha256
from changeover.registry.service import Registry
from changeover.registry.shared import (
    DatabaseBlobs,
    FsspecBlobs,
    SharedArtifacts,
    open_artifacts,
    open_locator,
)
from changeover.store import tables as t
from changeover.store.store import Store
from modelfiles import python_model
from serverproc import TOKEN, free_port, running_server

BUCKET = "changeover-test"
X = np.array([[1.0, 2.0], [3.0, 4.0]])
BODY = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 2], "data": X.reshape(-1).tolist()}]}


@pytest.fixture(scope="module")
def s3() -> Iterator[dict]:
    """A moto S3 server on 127.0.0.1 with one bucket; yields the s3fs options to reach it."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import boto3

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
               "client_kwargs": {"region_name": "us-east-1"}}
    try:
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield options
    finally:
        server.stop()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        yield store
    finally:
        store.close()


def blob_stores(kind: str, tmp_path: Path, request: pytest.FixtureRequest):
    if kind == "db":
        return DatabaseBlobs(request.getfixturevalue("sqlite_store").engine)
    if kind == "file":
        return FsspecBlobs(f"file://{tmp_path / 'bucket'}")
    options = request.getfixturevalue("s3")
    return FsspecBlobs(f"s3://{BUCKET}/unit-{tmp_path.name}", options)


# ---- each backend: put, get, exists ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["db", "s3", "file"])
def test_a_blob_store_puts_gets_and_says_what_it_has(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    blobs = blob_stores(kind, tmp_path, request)
    source = tmp_path / "weights.bin"
    source.write_bytes(b"\x00weights\xff" * 1000)
    sha = file_sha256(source)
    assert not blobs.exists(sha)
    assert not blobs.get(sha, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    blobs.put(sha, source)
    blobs.put(sha, source)  # idempotent
    assert blobs.exists(sha)
    assert blobs.get(sha, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == source.read_bytes()
    assert kind in ("db", "file") or blobs.name == f"s3://{BUCKET}/unit-{tmp_path.name}"


def test_the_local_folder_puts_verifies_and_says_what_it_has(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    folder = python_model(tmp_path / "m", "return {'y': inputs['x'].sum(axis=1)}")
    sha, relative = store.put(folder)
    assert store.exists(relative) and store.verify(relative, sha) == store.path(relative)
    assert open_locator(store.locator).verify(relative, sha) == store.path(relative)
    missing = ArtifactStore(tmp_path / "elsewhere")
    assert not missing.exists(relative)
    with pytest.raises(ArtifactMissing, match="the local folder"):
        missing.verify(relative, sha)


@pytest.mark.parametrize("kind", ["db", "s3"])
def test_files_and_folders_keep_their_content_address(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    shared = SharedArtifacts(blob_stores(kind, tmp_path, request), tmp_path / "cache", spec=kind)
    folder = python_model(tmp_path / "m", "return {'y': inputs['x'].sum(axis=1)}")
    (folder / "data" / "deep").mkdir(parents=True)
    (folder / "data" / "deep" / "table.csv").write_text("a,b\n1,2\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"junk")
    sha, relative = shared.put(folder)
    assert sha == folder_sha256(folder)
    assert relative == f"sha256/{sha[:2]}/{sha}/"  # the same address as in the local folder, marked a folder
    assert shared.exists(relative)
    copy = shared.verify(relative, sha)
    assert copy == tmp_path / "cache" / relative.rstrip("/")
    assert folder_sha256(copy) == sha
    assert (copy / "data" / "deep" / "table.csv").read_text() == "a,b\n1,2\n"
    assert not (copy / "__pycache__").exists()
    assert shared.verify(relative, sha) == copy  # again: fetched and checked again, the same copy

    source = tmp_path / "model.onnx"
    source.write_bytes(b"onnx" * 500)
    file_sha, file_relative = shared.put(source)
    assert (file_sha, file_relative) == (file_sha256(source), f"sha256/{file_sha[:2]}/{file_sha}.onnx")
    assert shared.verify(file_relative, file_sha).read_bytes() == source.read_bytes()


def test_an_onnx_model_with_a_sidecar_loads_on_a_replica_that_did_not_push_it(tmp_path: Path,
                                                                               sqlite_store: Store) -> None:
    from modelfiles import breast_cancer, onnx_mlp

    path = onnx_mlp(tmp_path / "mlp.onnx", hidden=(8,))
    (tmp_path / "mlp.onnx.yaml").write_text("task: classification\n")  # a sidecar: pushed as a folder
    pushing = Registry(sqlite_store, open_artifacts("db", tmp_path / "home-a" / "artifacts",
                                                    engine=sqlite_store.engine))
    record, _ = pushing.push(path, name="mlp")
    assert record.artifact.endswith("/")
    other = Registry(sqlite_store, open_artifacts("db", tmp_path / "home-b" / "artifacts",
                                                  engine=sqlite_store.engine))
    x, _y = breast_cancer()
    model = other.load(record)
    try:
        out = model.predict({"features": x[:4].astype(np.float32)})
        assert len(next(iter(out.values()))) == 4
    finally:
        model.close()
    assert (tmp_path / "home-b" / "artifacts" / record.artifact / "mlp.onnx").exists()


def test_the_setting_chooses_the_backend(tmp_path: Path, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from changeover.settings import Settings

    assert isinstance(open_artifacts(None, tmp_path), ArtifactStore)
    assert isinstance(open_artifacts("", tmp_path), ArtifactStore)
    db = open_artifacts("db", tmp_path, engine=sqlite_store.engine)
    assert isinstance(db, SharedArtifacts) and "database" in db.backend
    reopened = open_locator(db.locator, sqlite_store.engine)
    assert isinstance(reopened, SharedArtifacts) and reopened.root == tmp_path
    with pytest.raises(ValueError, match="s3://"):
        open_artifacts("bucket/prefix", tmp_path)
    monkeypatch.setenv("CHANGEOVER_ARTIFACTS", "s3://b/p")
    monkeypatch.setenv("CHANGEOVER_ARTIFACTS_OPTIONS", '{"endpoint_url": "http://127.0.0.1:9"}')
    settings = Settings()
    assert (settings.artifacts, settings.artifacts_options) == ("s3://b/p", {"endpoint_url": "http://127.0.0.1:9"})


# ---- missing is not tampered -----------------------------------------------------------------


def delete_blob(kind: str, shared: SharedArtifacts, sha: str, engine: sa.Engine) -> None:
    if kind == "db":
        with engine.begin() as conn:
            conn.execute(sa.delete(t.artifact_blobs).where(t.artifact_blobs.c.sha256 == sha))
    else:
        blobs = shared.blobs
        assert isinstance(blobs, FsspecBlobs)
        blobs.fs.rm(blobs.key(sha))


def change_blob(kind: str, shared: SharedArtifacts, sha: str, engine: sa.Engine, data: bytes) -> None:
    if kind == "db":
        with engine.begin() as conn:
            conn.execute(sa.update(t.artifact_blobs).where(t.artifact_blobs.c.sha256 == sha).values(data=data))
    else:
        blobs = shared.blobs
        assert isinstance(blobs, FsspecBlobs)
        blobs.fs.pipe_file(blobs.key(sha), data)


@pytest.mark.parametrize("kind", ["db", "s3"])
def test_a_deleted_blob_is_missing_and_a_changed_one_tampered(kind: str, tmp_path: Path, sqlite_store: Store,
                                                              request: pytest.FixtureRequest) -> None:
    shared = SharedArtifacts(blob_stores(kind, tmp_path, request), tmp_path / "cache", spec=kind)
    registry = Registry(sqlite_store, shared)
    engine = sqlite_store.engine
    records = {}
    for factor in (1, 2, 3, 4):
        folder = python_model(tmp_path / f"m{factor}", f"return {{'y': inputs['x'].sum(axis=1) * {factor}}}")
        records[factor], _ = registry.push(folder, name="m", trust=True)
    model = registry.load(records[1])
    assert model.predict({"x": X})["y"].tolist() == [3.0, 7.0]
    model.close()

    # the listing blob gone; then one file's blob gone: missing (naming the backend), twice, one event
    delete_blob(kind, shared, records[2].sha256, engine)
    predictor_sha = file_sha256(tmp_path / "m3" / "predictor.py")
    delete_blob(kind, shared, predictor_sha, engine)
    for record in (records[2], records[2], records[3]):
        with pytest.raises(ArtifactMissing) as info:
            registry.load(record)
        assert shared.backend in str(info.value) and "missing" in str(info.value)
        assert not isinstance(info.value, ArtifactTampered)
    assert "predictor.py" in str(info.value)
    missing = [e for e in sqlite_store.events("m") if e["kind"] == "missing"]
    assert [e["evidence"]["version"] for e in missing] == [2, 3]
    assert missing[0]["evidence"]["backend"] == shared.backend
    assert [e for e in sqlite_store.events("m") if e["kind"] == "tampered"] == []

    # changed bytes (of the listing, then of a file shared by no other version): tampered
    change_blob(kind, shared, records[4].sha256, engine, b"model.yaml\x00" + b"0" * 64 + b"\n")
    with pytest.raises(ArtifactTampered):
        registry.load(records[4])
    predictor4 = (tmp_path / "m4" / "predictor.py").read_bytes()
    listing = b"".join(name.encode() + b"\x00" + file_sha256(tmp_path / "m4" / name).encode() + b"\n"
                       for name in ("model.yaml", "predictor.py"))
    assert hashlib.sha256(listing).hexdigest() == records[4].sha256
    change_blob(kind, shared, records[4].sha256, engine, listing)  # the listing restored
    change_blob(kind, shared, file_sha256(tmp_path / "m4" / "predictor.py"), engine,
                predictor4.replace(b"* 4", b"* 400"))
    with pytest.raises(ArtifactTampered, match="predictor.py"):
        registry.load(records[4])
    tampered = [e for e in sqlite_store.events("m") if e["kind"] == "tampered"]
    assert [e["evidence"]["version"] for e in tampered] == [4, 4]
    model = registry.load(records[1])  # the intact one still loads
    assert model.predict({"x": X})["y"].tolist() == [3.0, 7.0]
    model.close()


# ---- two real replicas, one PostgreSQL, two homes ---------------------------------------------


def infer(http: httpx.Client, expect_version: str, timeout: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = http.post("/v2/models/shared/infer", json=BODY)
        if (response.status_code == 200 and response.headers.get("x-changeover-version") == expect_version) \
                or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def events_of(http: httpx.Client, kind: str) -> list[dict]:
    return [e for e in http.get("/api/events", params={"limit": 1000}).raise_for_status().json() if e["kind"] == kind]


@pytest.mark.parametrize("kind", ["db", "s3"])
def test_a_replica_serves_what_another_replica_pushed(kind: str, tmp_path: Path, fresh_postgres_url: str,
                                                      request: pytest.FixtureRequest) -> None:
    env = {"CHANGEOVER_ARTIFACTS": "db"}
    if kind == "s3":
        env = {"CHANGEOVER_ARTIFACTS": f"s3://{BUCKET}/changeover-{tmp_path.name}",
               "CHANGEOVER_ARTIFACTS_OPTIONS": json.dumps(request.getfixturevalue("s3"))}
    with running_server(tmp_path / "home-a", store=fresh_postgres_url, env=env) as a, \
            running_server(tmp_path / "home-b", store=fresh_postgres_url, env=env) as b, \
            a.client() as http_a, b.client() as http_b:
        client = Client(url=a.url, token=TOKEN)
        try:
            for factor in (2, 3):
                folder = python_model(tmp_path / f"m{factor}", f"return {{'y': inputs['x'].sum(axis=1) * {factor}}}")
                client.push(folder, name="shared", labels={}, runtime=None, trust=True)
        finally:
            client.close()
        http_a.put("/api/models/shared/aliases/champion", json={"version": 1}).raise_for_status()
        response = infer(http_b, "1")
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [6.0, 14.0]
        assert infer(http_a, "1").json()["outputs"][0]["data"] == [6.0, 14.0]
        record = http_b.get("/api/models/shared/versions/1").raise_for_status().json()
        copies = list((b.home / "artifacts").rglob(record["sha256"]))  # B's checked local copy
        assert len(copies) == 1 and (copies[0] / "predictor.py").exists(), copies

        # v2's bytes leave the shared store: B refuses it as missing, and the champion keeps serving
        v2 = http_b.get("/api/models/shared/versions/2").raise_for_status().json()
        if kind == "db":
            engine = sa.create_engine(fresh_postgres_url)
            try:
                with engine.begin() as conn:
                    conn.execute(sa.delete(t.artifact_blobs).where(t.artifact_blobs.c.sha256 == v2["sha256"]))
            finally:
                engine.dispose()
        else:
            blobs = FsspecBlobs(env["CHANGEOVER_ARTIFACTS"], request.getfixturevalue("s3"))
            blobs.fs.rm(blobs.key(v2["sha256"]))
        refused = http_b.put("/api/models/shared/aliases/champion", json={"version": 2})
        assert refused.status_code >= 400, refused.text
        assert "missing" in refused.json()["error"] and "checksum" not in refused.json()["error"]
        assert infer(http_b, "1").json()["outputs"][0]["data"] == [6.0, 14.0]
        missing = events_of(http_a, "missing")
        assert [e["evidence"]["version"] for e in missing] == [2]
        assert ("database" if kind == "db" else "s3://") in missing[0]["message"]
        assert events_of(http_a, "tampered") == []
