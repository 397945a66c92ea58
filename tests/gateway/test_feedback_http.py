"""POST /v1/feedback against a real server: labels joined to served requests, the first one
kept, clear 4xx answers, and the online metric of a shadow and its champion on the same requests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, running_server

OUTPUTS = "[{name: label, datatype: INT64, shape: [-1]}]"
CHAMPION = "return {'label': (inputs['x'][:, 0] > 0).astype(np.int64)}"
# disagrees with the champion wherever x1 > 100
SHADOW = "x = inputs['x']\nreturn {'label': ((x[:, 0] > 0) ^ (x[:, 1] > 100)).astype(np.int64)}"


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
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("feedback")
    with running_server(root / "home", env={"COLUMNS": "200"}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        for number, body in ((1, CHAMPION), (2, SHADOW)):
            folder = python_model(root / f"v{number}", body, outputs=OUTPUTS)
            assert pusher.push(folder, name="m", labels={}, runtime=None, trust=True)["version"] == number
        pusher.close()
        with srv.client() as api:
            assert api.put("/api/models/m/aliases/champion", json={"version": 1}).status_code == 200
        wait_until(lambda: serve(srv, 1.0, 1.0)[0] == 1, "the champion to serve")
        yield srv


def serve(srv: ServerProcess, x0: float, x1: float) -> tuple[int | None, str]:
    """The label the user got, and the request id to send feedback for."""
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [x0, x1]}]}
    r = httpx.post(f"{srv.url}/v2/models/m/infer", json=body, timeout=10)
    if r.status_code != 200:
        return None, ""
    assert r.headers["x-changeover-version"] == "1"
    return r.json()["outputs"][0]["data"][0], r.headers["x-request-id"]


def feedback(srv: ServerProcess, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(f"{srv.url}/v1/feedback", content=body, headers={"content-type": "application/json"})
    return httpx.post(f"{srv.url}/v1/feedback", json=body)


def test_feedback_for_a_request_just_served_is_accepted(server: ServerProcess) -> None:
    _, rid = serve(server, 2.0, 1.0)
    r = feedback(server, {"request_id": rid, "label": 1})  # no wait: the request log is written off the critical path
    assert r.status_code == 201, r.text
    assert r.json() == {"request_id": rid, "status": "accepted"}


def test_a_reward_is_feedback_too(server: ServerProcess) -> None:
    _, rid = serve(server, 2.0, 1.0)
    r = feedback(server, {"request_id": rid, "reward": 0.25})
    assert r.status_code == 201, r.text


def test_an_unknown_request_id_is_404(server: ServerProcess) -> None:
    unknown = uuid.uuid4().hex
    r = feedback(server, {"request_id": unknown, "label": 1})
    assert r.status_code == 404
    assert unknown in r.json()["error"]


def test_a_duplicate_keeps_the_first_label_and_says_so(server: ServerProcess) -> None:
    _, rid = serve(server, -3.0, 1.0)
    assert feedback(server, {"request_id": rid, "label": 0}).status_code == 201
    for late in (1, 1):
        r = feedback(server, {"request_id": rid, "label": late})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["status"] == "duplicate" and out["request_id"] == rid
        assert out["kept"]["label"] == 0
        assert "first" in out["detail"]


@pytest.mark.parametrize(("body", "field"), [
    ({"label": 1}, "request_id"),
    ({"request_id": "", "label": 1}, "request_id"),
    ({"request_id": 42, "label": 1}, "request_id"),
    ({"request_id": "r-1"}, "label"),
    ({"request_id": "r-1", "reward": "a lot"}, "reward"),
    ([{"request_id": "r-1", "label": 1}], None),
    (b"{not json", None),
], ids=["no-id", "empty-id", "numeric-id", "no-label-or-reward", "text-reward", "not-an-object", "not-json"])
def test_a_malformed_body_is_400_naming_the_field(server: ServerProcess, body: Any, field: str | None) -> None:
    r = feedback(server, body)
    assert r.status_code == 400, r.text
    out = r.json()
    assert out["field"] == field
    if field:
        assert out["error"].startswith(f"{field}:")


def test_the_shadow_report_scores_both_versions_on_the_same_labelled_requests(server: ServerProcess) -> None:
    with server.client() as api:
        assert api.post("/api/models/m/shadows", json={"version": "2", "sample": 1.0}).status_code == 201

        def mirroring() -> bool:
            status = api.get("/api/status").json()
            policy = next(m["policy"] for m in status["models"] if m["model"] == "m")
            return ([s["version"] for s in policy["shadows"]] == [2]
                    and status["gateway"]["generations"].get("m") == policy["generation"])
        wait_until(mirroring, "the gateway to mirror to v2")

        # 20 rows both versions answer alike, 20 where the shadow disagrees
        served = [(*serve(server, x0, x1), x0) for x1 in (1.0, 150.0) for x0 in (*range(1, 11), *range(-10, 0))]
        assert all(label is not None for label, _, _ in served)
        # the truth is the champion's answer; labels come back for 30 of the 40 requests
        for label, rid, _ in served[:30]:
            assert feedback(server, {"request_id": rid, "label": label}).status_code == 201

        def online() -> dict[str, Any] | None:
            figures = api.get("/api/models/m/shadows/report", params={"version": "2"}).json()["figures"]
            return figures["online"] if figures["overall"].get("pairs") == 40 and figures["online"]["labelled"] == 30 else None
        metric = wait_until(online, "40 pairs, 30 of them labelled")
    assert metric["metric"] == "accuracy"
    assert metric["champion"] == pytest.approx(1.0)
    assert metric["shadow"] == pytest.approx(20 / 30)  # wrong on the 10 labelled rows with x1 > 100
    assert metric["difference"] == pytest.approx(-10 / 30)

    text = server.cli("shadow", "report", "m")
    assert text.returncode == 0, text.stderr
    assert "online accuracy (champion / shadow, 30 labels)" in text.stdout
    assert "1 / 0.6667" in text.stdout


def test_a_null_label_is_not_feedback(server: ServerProcess) -> None:
    _, rid = serve(server, 4.0, 1.0)
    r = feedback(server, {"request_id": rid, "label": None})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "label"
    assert feedback(server, {"request_id": rid, "label": 1}).status_code == 201
