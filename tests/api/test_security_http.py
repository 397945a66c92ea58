"""Security by default, against a real server: every body is bounded (413 naming the limit,
before the body is read and before the token is checked), no origin is allowed cross-origin
(no CORS header on the management API, inference or feedback), and neither token appears in
any answer or any log line, whatever is sent."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import ServerProcess, retry_loading

SECRET = "mgmt-" + secrets.token_urlsafe(24)
FEEDBACK_SECRET = "fb-" + secrets.token_urlsafe(24)
ARTIFACT_LIMIT, DATA_LIMIT, INFER_LIMIT = 200_000, 100_000, 100_000
JSON_LIMIT = 1024 * 1024  # the default
# a model that raises on a negative first input: a traceback in the log, an error id in the answer
RAISES = "if (inputs['x'][:, 0] < 0).any():\n    raise ValueError('negative input')\nreturn {'y': inputs['x'].sum(axis=1)}"


def row(first: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [first, 1.0]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("security")
    srv = ServerProcess(root / "home", args=("--log-level", "debug"), env={
        "CHANGEOVER_TOKEN": SECRET, "CHANGEOVER_FEEDBACK_TOKEN": FEEDBACK_SECRET,
        "CHANGEOVER_MAX_ARTIFACT_BYTES": str(ARTIFACT_LIMIT), "CHANGEOVER_MAX_DATA_BYTES": str(DATA_LIMIT),
        "CHANGEOVER_MAX_BODY_BYTES": str(INFER_LIMIT)})
    srv.start()
    try:
        pusher = Client(url=srv.url, token=SECRET)
        assert pusher.push(python_model(root / "v1", RAISES), name="m", labels={}, runtime=None, trust=True)
        pusher.close()
        with api_client(srv) as api:
            assert api.put("/api/models/m/aliases/champion", json={"version": 1}).status_code == 200
        assert retry_loading(lambda: httpx.post(f"{srv.url}/v2/models/m/infer", json=row(1.0))).status_code == 200
        yield srv
    finally:
        srv.stop()


def api_client(srv: ServerProcess, token: str = SECRET) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"authorization": f"Bearer {token}"}, timeout=60)


def chunks(size: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """A body with no declared length (chunked): the limit counts what is read."""
    sent = 0
    while sent < size:
        yield b" " * min(piece, size - sent)
        sent += piece


# ---- request-size limits ---------------------------------------------------------------

LIMITED = [  # (method, path, params, limit, setting)
    ("POST", "/api/rollouts", {}, JSON_LIMIT, "CHANGEOVER_MAX_JSON_BYTES"),
    ("PUT", "/api/models/m/aliases/candidate", {}, JSON_LIMIT, "CHANGEOVER_MAX_JSON_BYTES"),
    ("POST", "/api/models/m/shadows", {}, JSON_LIMIT, "CHANGEOVER_MAX_JSON_BYTES"),
    ("PUT", "/api/models/m/versions/1/profile", {}, JSON_LIMIT, "CHANGEOVER_MAX_JSON_BYTES"),
    ("POST", "/api/models/m/versions", {"filename": "big.onnx"}, ARTIFACT_LIMIT, "CHANGEOVER_MAX_ARTIFACT_BYTES"),
    ("POST", "/api/data", {"filename": "big.csv"}, DATA_LIMIT, "CHANGEOVER_MAX_DATA_BYTES"),
    ("POST", "/api/models/m/versions/1/validate", {"filename": "big.csv", "task": "regression", "target": "y"},
     DATA_LIMIT, "CHANGEOVER_MAX_DATA_BYTES"),
]


@pytest.mark.parametrize(("method", "path", "params", "limit", "setting"), LIMITED)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_management_body_past_its_limit_is_a_413_naming_it(server: ServerProcess, method: str, path: str,
                                                             params: dict[str, str], limit: int, setting: str,
                                                             declared: bool) -> None:
    size = limit + 1
    body: bytes | Iterator[bytes] = b"{" + b" " * (size - 2) + b"}" if declared else chunks(size)
    with api_client(server) as api:
        r = api.request(method, path, params=params, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert f"larger than {limit} bytes" in r.json()["error"] and setting in r.json()["error"]


def test_a_body_is_bounded_before_the_token_is_checked(server: ServerProcess) -> None:
    """FastAPI reads a JSON body whole before the token dependency runs: unbounded, any caller
    could make the server hold gigabytes."""
    r = httpx.post(f"{server.url}/api/rollouts", content=chunks(JSON_LIMIT + 1),
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and "CHANGEOVER_MAX_JSON_BYTES" in r.text
    assert httpx.post(f"{server.url}/api/rollouts", json={"spec": {}}).status_code == 401


def test_bodies_within_their_limits_are_served(server: ServerProcess, tmp_path: Path) -> None:
    with api_client(server) as api:
        # under the JSON limit: read and judged (a spec with a long note is still a spec, refused for its field)
        r = api.post("/api/rollouts", json={"spec": {"model": "m", "candidate": "1", "note": "x" * (JSON_LIMIT // 2)}})
        assert r.status_code == 422 and "note" in r.text, r.text
        r = api.post("/api/data", params={"filename": "h.csv"}, content=b"a,y\n" + b"1,2\n" * (DATA_LIMIT // 5))
        assert r.status_code == 201, r.text


def test_inference_and_feedback_are_bounded_too(server: ServerProcess) -> None:
    for path in ("/v2/models/m/infer", "/v1/models/m:predict", "/v1/feedback"):
        r = httpx.post(f"{server.url}{path}", content=b" " * (INFER_LIMIT + 1),
                       headers={"content-type": "application/json", "authorization": f"Bearer {FEEDBACK_SECRET}"})
        assert r.status_code == 413, (path, r.text)


# ---- CORS ------------------------------------------------------------------------------

CROSS_ORIGIN = ["/api/status", "/api/rollouts", "/api/models/m/versions", "/v2/models/m/infer",
                "/v2/models/m/versions/1/infer", "/v1/models/m:predict", "/v1/feedback", "/", "/metrics"]


@pytest.mark.parametrize("path", CROSS_ORIGIN)
def test_no_origin_is_allowed_cross_origin(server: ServerProcess, path: str) -> None:
    origin = {"origin": "https://evil.example"}
    preflight = httpx.options(f"{server.url}{path}", headers=origin | {
        "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type"})
    sent = httpx.post(f"{server.url}{path}", json=row(1.0), headers=origin | {"authorization": f"Bearer {SECRET}"})
    for r in (preflight, sent):
        allowed = {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}
        assert allowed == {}, (path, r.request.method, r.status_code, allowed)


# ---- the tokens are never echoed or logged ----------------------------------------------

def every_answer(server: ServerProcess) -> list[httpx.Response]:
    """Calls with the right token, wrong ones (some holding the right one's text), none; errors of
    every kind: what each answered. (What a caller puts in a body may be echoed back to it: the
    tokens go only in the header here.)"""
    url = server.url
    near = [SECRET + "x", SECRET[:-1], "x" + SECRET, SECRET.upper(), f"{SECRET} {SECRET}", FEEDBACK_SECRET + "x"]
    out: list[httpx.Response] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for token in [SECRET, *near, ""]:
            auth = {"authorization": f"Bearer {token}"} if token else {}
            for path in ("/api/status", "/api/models", "/api/models/m", "/api/events", "/api/rollouts",
                         "/api/models/nope", "/api/nothing-here", "/api/events?after=-1", "/openapi.json"):
                out.append(http.get(path, headers=auth))
            out.append(http.post("/api/rollouts", headers=auth, json={"spec": {"model": "m", "candidate": "nope"}}))
            out.append(http.post("/api/rollouts", headers=auth | {"content-type": "application/json"},
                                 content=b"{not json"))
            out.append(http.put("/api/models/m/aliases/champion", headers=auth, json={"version": "x"}))
            out.append(http.delete("/api/status", headers=auth))
            out.append(http.post("/v1/feedback", headers=auth, json={"request_id": "nope", "label": 1}))
            out.append(http.post("/v1/feedback", headers=auth | {"content-type": "text/plain"}, content=b"1"))
            out.append(http.post("/v2/models/m/infer", headers=auth, json=row(-1.0)))  # the model raises
            out.append(http.post("/v2/models/m/infer", headers=auth, json={"inputs": "x"}))
        for path in ("/", "/metrics", "/v2/health/ready", "/v2/models/m", "/docs"):
            out.append(http.get(path, headers={"authorization": f"Bearer {SECRET}"}))
        out.append(http.get("/api/status", headers={"authorization": SECRET}))  # no scheme
        out.append(http.get("/api/status", headers={"authorization": f"Basic {SECRET}"}))
    return out


def test_no_token_is_echoed_in_an_answer_nor_written_to_the_log(server: ServerProcess) -> None:
    answers = every_answer(server)
    statuses = {r.status_code for r in answers}
    assert {200, 401, 403, 404, 413, 415, 422, 500} - statuses <= {413, 415}, statuses  # every kind of answer
    assert any(r.status_code == 500 and "error_id" in r.text for r in answers)  # the model's traceback was logged
    for r in answers:
        shown = r.text + " ".join(f"{k}: {v}" for k, v in r.headers.items())
        for secret in (SECRET, FEEDBACK_SECRET):
            assert secret not in shown, (r.request.method, str(r.request.url), r.status_code, r.text[:300])
    cli = server.cli("status", "--json")
    wrong = subprocess.run([sys.executable, "-m", "changeover.cli.main", "status"], capture_output=True, text=True,
                           env=server.env | {"CHANGEOVER_TOKEN": SECRET + "x"}, timeout=120)
    assert cli.returncode == 0 and wrong.returncode != 0, wrong.stderr
    for result in (cli, wrong):
        assert SECRET not in result.stdout + result.stderr
    time.sleep(0.5)  # what the server logs about the last calls
    log = server.log.read_text()
    assert "negative input" in log  # the traceback is there: the log is the one this server writes
    assert SECRET not in log and FEEDBACK_SECRET not in log
    assert os.stat(server.log).st_size > 0
