"""A ranker over real HTTP: the example folder `examples/recommender` (the one docs/models.md
documents) pushed to a real `changeover serve`, its ranking answered over the Open Inference
Protocol, its roles in the metadata and in `models show`, its list of ids in the request log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from changeover.cli.client import Client
from changeover.gateway.summary import MAX_LOGGED_IDS
from changeover.store.store import Store
from changeover.store.traffic import served_request
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, running_server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "recommender"
USERS = [1, 2, 3, 42]


def users(ids: list[int], datatype: str = "INT64") -> dict:
    return {"inputs": [{"name": "user_id", "datatype": datatype, "shape": [len(ids)], "data": ids}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("ranking")
    # a ranker with a long list (k = 300): the request log keeps its first ids only
    long = python_model(root / "long", "u = inputs['user_id'].reshape(-1, 1)\n"
                        "return {'item_ids': (u * 1000 + np.arange(300)).astype(np.int64)}",
                        inputs="[{name: user_id, datatype: INT64, shape: [-1]}]",
                        outputs="[{name: item_ids, datatype: INT64, shape: [-1, 300]}]")
    with running_server(root / "home", env={"COLUMNS": "250"}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        try:
            assert pusher.push(EXAMPLE, name="recs", labels={}, runtime=None, trust=True)["version"] == 1
            assert pusher.push(long, name="long", labels={}, runtime=None, trust=True)["version"] == 1
        finally:
            pusher.close()
        with srv.client() as api:
            for model in ("recs", "long"):
                api.put(f"/api/models/{model}/aliases/champion", json={"version": 1}).raise_for_status()
        yield srv


def infer(server: ServerProcess, model: str, body: dict, request_id: str | None = None) -> httpx.Response:
    headers = {"x-request-id": request_id} if request_id else {}
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=server.url, timeout=30) as http:
        while True:  # the controller publishes the champion within a tick
            response = http.post(f"/v2/models/{model}/infer", json=body, headers=headers)
            if response.status_code != 404 or time.monotonic() > deadline:
                return response
            time.sleep(0.05)


def logged(server: ServerProcess, request_id: str) -> dict:
    store = Store(f"sqlite:///{server.home / 'store.db'}", run_migrations=False)
    try:
        deadline = time.monotonic() + 20
        while (row := served_request(store, request_id)) is None:
            assert time.monotonic() < deadline, "the request never reached the request log"
            time.sleep(0.2)
        return row
    finally:
        store.close()


def test_the_example_recommender_answers_the_top_10_item_ids_per_user(server: ServerProcess) -> None:
    response = infer(server, "recs", users(USERS), request_id="recs-1")
    assert response.status_code == 200, response.text
    assert response.headers["x-changeover-version"] == "1"
    items, scores = response.json()["outputs"]
    assert (items["name"], items["datatype"], items["shape"]) == ("items", "INT64", [4, 10])
    assert (scores["name"], scores["datatype"], scores["shape"]) == ("scores", "FP32", [4, 10])
    rows = [items["data"][i * 10:(i + 1) * 10] for i in range(4)]
    row_scores = [scores["data"][i * 10:(i + 1) * 10] for i in range(4)]
    for ids, values in zip(rows, row_scores, strict=True):
        assert len(set(ids)) == 10 and all(1000 <= i < 1500 for i in ids)  # ids of the catalogue, not positions
        assert values == sorted(values, reverse=True)  # best first, aligned with the ids
    assert rows[0] != rows[1]  # personal lists
    # deterministic: the same user gets the same list alone as in a batch
    alone = infer(server, "recs", users([USERS[2]])).json()["outputs"][0]["data"]
    assert alone == rows[2]
    # the request log keeps the first row's ids under "ranking", for feedback to be joined to
    output = logged(server, "recs-1")["output"]
    assert output["ranking"] == rows[0] and output["items"] == rows[0]


def test_a_long_ranking_is_logged_bounded(server: ServerProcess) -> None:
    response = infer(server, "long", users([7]), request_id="long-1")
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [1, 300]
    output = logged(server, "long-1")["output"]
    assert output["ranking"] == [7000 + i for i in range(MAX_LOGGED_IDS)]


def test_the_metadata_and_models_show_carry_the_task_and_the_roles(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        meta = http.get("/v2/models/recs").json()
        inferred = http.get("/v2/models/long").json()
    assert meta["parameters"] == {"task": "ranking"}
    assert meta["inputs"] == [{"name": "user_id", "datatype": "INT64", "shape": [-1]}]
    assert meta["outputs"] == [
        {"name": "items", "datatype": "INT64", "shape": [-1, 10], "parameters": {"role": "ranking"}},
        {"name": "scores", "datatype": "FP32", "shape": [-1, 10], "parameters": {"role": "scores"}},
    ]
    # not declared: the role and the task are inferred from the output's name
    assert inferred["outputs"][0]["parameters"] == {"role": "ranking"} and inferred["parameters"] == {"task": "ranking"}

    shown = json.loads(server.cli("models", "show", "recs@1", "--json", check=True).stdout)
    assert shown["signature"]["task"] == "ranking"
    assert [t.get("role") for t in shown["signature"]["outputs"]] == ["ranking", "scores"]
    assert (shown["task"], shown["roles"]) == ("ranking", {"items": "ranking", "scores": "scores"})
    table = server.cli("models", "show", "recs", check=True).stdout
    line = next(ln for ln in table.splitlines() if "python" in ln)
    assert "ranking" in line and "items INT64 [-1, 10] (ranking); scores FP32 [-1, 10] (scores)" in line


def test_a_request_the_ranker_cannot_take_is_refused_naming_the_input(server: ServerProcess) -> None:
    refused = infer(server, "recs", users([1.5, 2.5], datatype="FP64"))  # type: ignore[list-item]
    assert refused.status_code == 422
    assert "user_id" in refused.text


def test_a_declared_role_the_tensor_cannot_hold_is_refused_at_push(server: ServerProcess, tmp_path: Path) -> None:
    bad = python_model(tmp_path / "bad", "return {'items': np.zeros((len(inputs['user_id']), 3))}",
                       inputs="[{name: user_id, datatype: INT64, shape: [-1]}]",
                       outputs="[{name: items, datatype: FP32, shape: [-1, 3], role: ranking}]")
    result = server.cli("models", "push", str(bad), "--name", "bad-ranker", "--trust")
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "'items'" in message and "role ranking holds item ids" in message
