"""The management API over real HTTP: the token (401/403, generated on first start, mode 0600,
printed once, read by the CLI), OpenAPI, and the endpoints' answers and errors.

One server serves the module: started with CHANGEOVER_TOKEN set but empty, so it generates its
token, and with inference guarded by the token too. (That inference needs no token by default is
checked in tests/gateway/test_inference_http.py, whose client sends none.)"""

from __future__ import annotations

import io
import json
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelfiles import python_model
from serverproc import TOKEN, ServerProcess

API_CALLS = [
    ("GET", "/api/status", None),
    ("GET", "/api/models", None),
    ("GET", "/api/models/m", None),
    ("GET", "/api/models/m/versions/1", None),
    ("GET", "/api/events", None),
    ("POST", "/api/models/m/versions?filename=m.skops", b"bytes"),
    ("PUT", "/api/models/m/aliases/champion", b'{"version": 1}'),
]


def tarball(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for item in sorted(folder.rglob("*")):
            archive.add(item, arcname=item.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("api") / "home",
                        env={"CHANGEOVER_TOKEN": "", "CHANGEOVER_REQUIRE_TOKEN_FOR_INFERENCE": "true"}).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return (server.home / "token").read_text().strip()


@pytest.fixture
def admin(server: ServerProcess, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return python_model(tmp_path_factory.mktemp("models") / "triple", "return inputs['x'].sum(axis=1) * 3")


# ---- the token ----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), API_CALLS)
def test_every_management_call_needs_the_token(
    server: ServerProcess, token: str, method: str, path: str, body: bytes | None
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        missing = http.request(method, path, content=body)
        assert missing.status_code == 401, missing.text
        assert missing.headers["www-authenticate"] == "Bearer"
        assert "Bearer" in missing.json()["error"]
        for header in ("Basic dXNlcjpwYXNz", "Bearer", "Token " + token):
            assert http.request(method, path, content=body, headers={"authorization": header}).status_code == 401
        wrong = http.request(method, path, content=body, headers={"authorization": "Bearer not-the-token"})
        assert wrong.status_code == 403, wrong.text
        assert wrong.json()["error"] == "wrong token"
        almost = http.request(method, path, content=body, headers={"authorization": f"Bearer {token}x"})
        assert almost.status_code == 403
        other = http.request(method, path, content=body, headers={"authorization": f"Bearer {TOKEN}"})
        assert other.status_code == 403  # the tests' usual token is not this server's
    assert not list((server.home / "artifacts").rglob("*.skops"))  # nothing was stored


def test_probes_and_metrics_need_no_token(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/v2/health/live").status_code == 200
        assert http.get("/v2/health/ready").status_code == 200
        assert http.get("/metrics").status_code == 200


def test_openapi_lists_the_management_paths(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    expected = {
        "/api/status": {"get"},
        "/api/models": {"get"},
        "/api/models/{name}": {"get"},
        "/api/models/{name}/versions": {"post"},
        "/api/models/{name}/versions/{ref}": {"get"},
        "/api/models/{name}/aliases/{alias}": {"put"},
        "/api/events": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
        for operation in paths[path].values():
            assert operation.get("summary"), path
    push_params = {p["name"] for p in paths["/api/models/{name}/versions"]["post"]["parameters"]}
    assert {"filename", "runtime", "trust", "folder", "label"} <= push_params


# ---- the endpoints ------------------------------------------------------------------------


def test_push_show_alias_and_events_over_http(admin: httpx.Client, folder: Path) -> None:
    body = tarball(folder)
    http = admin
    params = {"filename": "triple.tar.gz", "folder": "true", "trust": "true", "label": ["team=api", "tier=gold"]}
    created = http.post("/api/models/triple/versions", params=params, content=body,
                        headers={"x-changeover-actor": "alice"})
    assert created.status_code == 201, created.text
    record = created.json()
    assert (record["model"], record["version"], record["created"], record["runtime"]) == ("triple", 1, True, "python")
    assert record["labels"] == {"team": "api", "tier": "gold"}
    assert len(record["sha256"]) == 64
    again = http.post("/api/models/triple/versions", params=params, content=body)
    assert again.status_code == 200 and again.json()["created"] is False and again.json()["version"] == 1

    moved = http.put("/api/models/triple/aliases/champion", json={"version": 1, "reason": "first"},
                     headers={"x-changeover-actor": "bob"})
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"model": "triple", "alias": "champion", "version": 1, "previous": None}

    one = http.get("/api/models/triple/versions/champion").json()
    assert one["version"] == 1 and one["aliases"] == ["champion"] and one["sha256"] == record["sha256"]
    model = http.get("/api/models/triple").json()
    assert model["aliases"] == {"champion": 1}
    assert [(h["alias"], h["version"], h["actor"]) for h in model["alias_history"]] == [("champion", 1, "bob")]
    listing = http.get("/api/models").json()
    assert {"model": "triple", "versions": [1], "aliases": {"champion": 1}} in listing

    events = http.get("/api/events", params={"model": "triple"}).json()
    assert [(e["kind"], e["actor"]) for e in events][:2] == [("push", "alice"), ("alias", "bob")]
    newest = http.get("/api/events", params={"model": "triple", "limit": 1}).json()
    assert len(newest) == 1 and newest[0]["id"] == events[-1]["id"]
    later = http.get("/api/events", params={"model": "triple", "after": events[0]["id"]}).json()
    assert [e["id"] for e in later] == [e["id"] for e in events[1:]]

    deadline = time.monotonic() + 10
    while True:
        answer = http.post("/v2/models/triple/infer",
                           json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]})
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [9.0]
    status = http.get("/api/status").json()
    row = next(m for m in status["models"] if m["model"] == "triple")
    assert row["aliases"] == {"champion": 1} and row["policy"]["champion"] == 1


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "needle"),
    [
        ("GET", "/api/models/nope", {}, 404, "not found"),
        ("GET", "/api/models/nope/versions/1", {}, 404, "not found"),
        ("GET", "/api/models/triple/versions/9", {}, 404, "not found"),
        ("GET", "/api/models/triple/versions/candidate", {}, 404, "no alias"),
        ("PUT", "/api/models/triple/aliases/champion", {"json": {"version": 9}}, 404, "not found"),
        ("PUT", "/api/models/nope/aliases/champion", {"json": {"version": 1}}, 404, "not found"),
        ("PUT", "/api/models/triple/aliases/champion", {"json": {"version": 0}}, 422, None),
        ("PUT", "/api/models/triple/aliases/champion", {"json": {"version": "one"}}, 422, None),
        ("PUT", "/api/models/triple/aliases/champion", {"content": b"{oops"}, 422, None),
        ("PUT", "/api/models/triple/aliases/bad%20alias!", {"json": {"version": 1}}, 422, "alias"),
        ("POST", "/api/models/triple/versions", {"params": {"filename": "m.skops"}, "content": b""}, 422, "empty"),
        ("POST", "/api/models/triple/versions", {"content": b"x"}, 422, None),  # filename is required
        ("POST", "/api/models/triple/versions", {"params": {"filename": "m.skops", "label": "nolabel"}, "content": b"x"},
         422, "k=v"),
        ("POST", "/api/models/triple/versions", {"params": {"filename": "f.tar.gz", "folder": "true"}, "content": b"no tar"},
         422, "tar.gz"),
        ("POST", "/api/models/bad%20name/versions", {"params": {"filename": "m.skops"}, "content": b"x"}, 422, "name"),
        ("GET", "/api/events", {"params": {"limit": 0}}, 422, None),
    ],
)
def test_management_errors_are_clear(
    admin: httpx.Client, folder: Path, method: str, path: str, kwargs: dict, status: int, needle: str | None
) -> None:
    if admin.get("/api/models/triple").status_code == 404:  # independent of test order
        admin.post("/api/models/triple/versions", params={"filename": "t.tar.gz", "folder": "true", "trust": "true"},
                   content=tarball(folder)).raise_for_status()
    response = admin.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    if needle is not None:
        assert needle in response.json()["error"]


def test_a_pickle_without_trust_is_refused_with_an_event(admin: httpx.Client) -> None:
    http = admin
    response = http.post("/api/models/pickled/versions", params={"filename": "model.pkl"}, content=b"\x80\x04K\x01.")
    assert 400 <= response.status_code < 500 and "--trust" in response.json()["error"]
    events = http.get("/api/events", params={"limit": 1000}).json()
    assert any(e["kind"] == "refused" and e["evidence"]["model"] == "pickled" for e in events)
    assert http.get("/api/models/pickled").status_code == 404


@pytest.mark.parametrize("filename", ["junk.skops", "junk.onnx", "junk.joblib"])
def test_a_corrupt_artifact_is_refused_with_a_4xx_and_an_event(server: ServerProcess, token: str, filename: str) -> None:
    name = "junk-" + filename.split(".")[1]
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:  # a fresh connection each
        response = http.post(f"/api/models/{name}/versions", params={"filename": filename, "trust": "true"},
                             content=b"these bytes are not a model")
    assert 400 <= response.status_code < 500, response.text
    assert filename in response.json()["error"]
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        events = http.get("/api/events", params={"limit": 1000}).json()
    assert any(e["kind"] == "refused" and e["evidence"]["model"] == name for e in events)


# ---- a generated token --------------------------------------------------------------------


def test_a_token_is_generated_on_first_start_kept_0600_and_never_printed(server: ServerProcess, token: str) -> None:
    token_file = server.home / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token) >= 32 and token != TOKEN
    assert token not in server.log.read_text()
    assert str(token_file) in server.log.read_text()  # where it is, said once
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/api/models").status_code == 401
        assert http.get("/api/models", headers={"authorization": f"Bearer {token}"}).status_code == 200


def test_the_cli_reads_the_generated_token_from_the_home(server: ServerProcess, admin: httpx.Client) -> None:
    result = server.cli("models", "list", "--json")  # CHANGEOVER_TOKEN is empty in its environment too
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == admin.get("/api/models").json()


def test_the_token_setting_can_guard_inference_too(server: ServerProcess, token: str) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v2/models/m/infer", json=body).status_code == 401
        assert http.post("/v2/models/m/infer", json=body, headers={"authorization": "Bearer nope"}).status_code == 403
        assert http.post("/v2/models/m/infer", json=body, headers={"authorization": f"Bearer {token}"}).status_code == 404
        assert http.post("/v1/models/m:predict", json={"instances": [[1]]}).status_code == 401
        assert http.post("/v2/models/triple/versions/1/infer", json=body).status_code == 401


def test_the_token_setting_guards_feedback(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.post("/v1/feedback", json={"request_id": "r1", "label": 1})
    assert response.status_code == 401, response.text


def test_a_restart_keeps_the_token_and_does_not_print_it_again(server: ServerProcess, token: str) -> None:
    """Last in the module: it stops the module's server."""
    server.stop()
    again = ServerProcess(server.home, env={"CHANGEOVER_TOKEN": ""}).start()
    try:
        assert (again.home / "token").read_text().strip() == token
        assert token not in again.log.read_text()
        with httpx.Client(base_url=again.url, timeout=30) as http:
            assert http.get("/api/models", headers={"authorization": f"Bearer {token}"}).status_code == 200
    finally:
        again.stop()
