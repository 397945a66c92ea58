"""Feedback for a ranker against a real server: clicked items or graded relevance posted to
`POST /v1/feedback`, scored against the list each version served, and read back from
`GET /api/models/{m}/online` and `GET /metrics`; bad ranking feedback is a 4xx naming the field."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, retry_loading, running_server

INPUTS = "[{name: user_id, datatype: INT64, shape: [-1]}]"
OUTPUTS = "[{name: items, datatype: INT64, shape: [-1, 10], role: ranking}]"
# user u gets items u*100 … u*100+9: v1 best first, v2 in reverse
V1 = "u = inputs['user_id'].reshape(-1, 1)\nreturn {'items': (u * 100 + np.arange(10)).astype(np.int64)}"
V2 = "u = inputs['user_id'].reshape(-1, 1)\nreturn {'items': (u * 100 + np.arange(9, -1, -1)).astype(np.int64)}"
IDEAL_2 = 1 + 1 / math.log2(3)  # ideal DCG of two relevant items of gain 1


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def ranker(folder: Path, body: str) -> Path:
    python_model(folder, body, inputs=INPUTS, outputs=OUTPUTS)
    with (folder / "model.yaml").open("a") as f:
        f.write("task: ranking\n")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("ranking-feedback")
    # the monitors tick every 0.5 s, so /metrics holds the online figures within their 30 s refresh
    with running_server(root / "home", env={"CHANGEOVER_ALERT_INTERVAL_S": "0.5"}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        try:
            for number, body in ((1, V1), (2, V2), (3, V1 + "\n# v3: a copy of v1 for the other tests")):
                assert pusher.push(ranker(root / f"v{number}", body), name="recs", labels={}, runtime=None,
                                   trust=True)["version"] == number
        finally:
            pusher.close()
        with srv.client() as api:
            api.put("/api/models/recs/aliases/champion", json={"version": 1}).raise_for_status()
        yield srv


def serve(srv: ServerProcess, version: int, user: int) -> tuple[list[int], str]:
    """The list `version` served to `user` (pinned: no routing), and its request id."""
    body = {"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [user]}]}
    r = retry_loading(lambda: httpx.post(f"{srv.url}/v2/models/recs/versions/{version}/infer", json=body, timeout=30))
    assert r.status_code == 200, r.text
    assert r.headers["x-changeover-version"] == str(version)
    return r.json()["outputs"][0]["data"], r.headers["x-request-id"]


def feedback(srv: ServerProcess, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(f"{srv.url}/v1/feedback", content=body, headers={"content-type": "application/json"})
    return httpx.post(f"{srv.url}/v1/feedback", json=body)


def test_clicks_and_graded_relevance_become_online_metrics_per_version(server: ServerProcess) -> None:
    # users 1..4 click the items u*100 and u*100+3 under both versions
    for version in (1, 2):
        for user in (1, 2, 3, 4):
            items, rid = serve(server, version, user)
            assert items == ([user * 100 + i for i in range(10)] if version == 1
                             else [user * 100 + i for i in range(9, -1, -1)])
            r = feedback(server, {"request_id": rid, "label": [user * 100, user * 100 + 3]})
            assert r.status_code == 201, r.text
            assert r.json() == {"request_id": rid, "status": "accepted", "relevant_not_served": 0}
    # user 5 under v1: graded relevance, one item the list did not contain (accepted, and counted)
    _, rid = serve(server, 1, 5)
    r = feedback(server, {"request_id": rid, "label": {"501": 2, "999999": 1, "502": 0}})
    assert r.status_code == 201, r.text
    assert r.json()["relevant_not_served"] == 1

    # by hand. v1, users 1-4: hits at ranks 1 and 4; v2: at ranks 7 and 10
    ndcg_v1 = (1 + 1 / math.log2(5)) / IDEAL_2
    ndcg_v2 = (1 / math.log2(8) + 1 / math.log2(11)) / IDEAL_2
    # v1, user 5: relevance 2 at rank 2; the ideal list is 2, then the unserved item's 1
    ndcg_u5 = (2 / math.log2(3)) / (2 + 1 / math.log2(3))
    expected = {
        "1": {"ndcg_at_10": (4 * ndcg_v1 + ndcg_u5) / 5, "ctr_at_10": (4 * 2 + 1) / 5, "precision_at_10": (4 * 0.2 + 0.1) / 5,
              "recall_at_10": (4 * 1 + 0.5) / 5, "mrr": (4 * 1 + 0.5) / 5, "ctr_at_5": (4 * 2 + 1) / 5},
        "2": {"ndcg_at_10": ndcg_v2, "ctr_at_10": 2.0, "precision_at_10": 0.2, "recall_at_10": 1.0, "mrr": 1 / 7,
              "ctr_at_5": 0.0},
    }
    with server.client() as api:
        def scored() -> dict[str, Any] | None:
            r = api.get("/api/models/recs/online", params={"window": "1h"})
            assert r.status_code == 200, r.text
            versions = r.json()["versions"]
            done = {v: versions.get(v, {}).get("compared") for v in ("1", "2")} == {"1": 5, "2": 4}
            return versions if done else None
        versions = wait_until(scored, "5 scored requests of v1 and 4 of v2")
    for version, figures in expected.items():
        got = versions[version]
        assert got["task"] == "ranking"
        for name, value in figures.items():
            assert got["metrics"][name] == pytest.approx(value), (version, name)
    assert versions["1"]["ranking"]["relevant_not_served"] == 1 and versions["1"]["ranking"]["relevant_items"] == 10

    def gauges() -> dict[tuple[str, str], float] | None:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        out = {(s.labels["version"], s.labels["metric"]): s.value
               for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "changeover_online_metric" and s.labels.get("model") == "recs"}
        return out if ("2", "ndcg_at_10") in out and out.get(("1", "ndcg_at_10")) == pytest.approx(
            expected["1"]["ndcg_at_10"]) else None
    got = wait_until(gauges, "the online gauges in /metrics", timeout=90)
    for version, figures in expected.items():
        for name, value in figures.items():
            assert got[(version, name)] == pytest.approx(value), (version, name)


def test_the_segment_header_breaks_online_metrics_down_by_segment(server: ServerProcess) -> None:
    """A request's segment is read from ``X-Changeover-Segment`` (the default `segment`
    setting), kept in the request log, and the online figures of each segment follow."""
    def serve_in(user: int, segment: str) -> str:
        body = {"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [user]}]}
        r = retry_loading(lambda: httpx.post(f"{server.url}/v2/models/recs/versions/3/infer", json=body,
                                             headers={"x-changeover-segment": segment}, timeout=30))
        assert r.status_code == 200, r.text
        return r.headers["x-request-id"]

    # v3 ranks like v1: in "eu" users click the first item (NDCG 1), in "us" nothing relevant is shown
    for user in (11, 12):
        assert feedback(server, {"request_id": serve_in(user, "eu"), "label": [user * 100]}).status_code == 201
    assert feedback(server, {"request_id": serve_in(13, "us"), "label": [999_999]}).status_code == 201
    with server.client() as api:
        def segments() -> dict[str, Any] | None:
            got = api.get("/api/models/recs/online", params={"window": "1h"}).json()["versions"].get("3", {})
            found = got.get("segments") or {}
            return found if {k: v.get("compared") for k, v in found.items()} == {"eu": 2, "us": 1} else None
        found = wait_until(segments, "v3's requests scored per segment")
    assert found["eu"]["requests"] == 2 and found["us"]["requests"] == 1
    assert found["eu"]["metrics"]["ndcg_at_10"] == pytest.approx(1.0)
    assert found["us"]["metrics"]["ndcg_at_10"] == pytest.approx(0.0)


@pytest.mark.parametrize(("label", "says"), [
    (1, "feedback for a ranker is"),
    ("101 103", "feedback for a ranker is"),
    ([101, 1.5], "item 1 is 1.5"),
    ([101, True], "item 1 is true"),
    ([[101, 103]], "item 0 is [101,103]"),
    ([{"id": 101}], "item 0 is"),
    ({"101": -1}, "relevance of item '101' must be a number >= 0, got -1"),
    ({"101": "high"}, "relevance of item '101' must be a number >= 0"),
    ({"101": True}, "got true"),
    ({"101": None}, "got null"),
], ids=["number", "text", "float-id", "bool-id", "nested-list", "object-id", "negative", "text-relevance",
        "bool-relevance", "null-relevance"])
def test_bad_ranking_feedback_is_422_naming_the_label(server: ServerProcess, label: Any, says: str) -> None:
    _, rid = serve(server, 3, 77)
    r = feedback(server, {"request_id": rid, "label": label})
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["field"] == "label" and out["error"].startswith("label: ") and says in out["error"], out
    # nothing was kept: the request still takes feedback (a reward, which scores no list)
    assert feedback(server, {"request_id": rid, "reward": 1.0}).status_code == 201


@pytest.mark.parametrize("raw", [b'{"request_id": "RID", "label": {"101": NaN}}',
                                 b'{"request_id": "RID", "label": {"101": 1e400}}'], ids=["nan", "infinite"])
def test_a_relevance_json_cannot_carry_is_400(server: ServerProcess, raw: bytes) -> None:
    _, rid = serve(server, 3, 78)
    r = feedback(server, raw.replace(b"RID", rid.encode()))
    assert r.status_code == 400, r.text
    assert "not valid JSON" in r.json()["error"]


def test_no_click_and_duplicates(server: ServerProcess) -> None:
    _, rid = serve(server, 3, 79)
    r = feedback(server, {"request_id": rid, "label": []})  # nobody clicked: an outcome of the list
    assert r.status_code == 201 and r.json()["relevant_not_served"] == 0
    again = feedback(server, {"request_id": rid, "label": [7901]})
    assert again.status_code == 200 and again.json()["kept"]["label"] == []
