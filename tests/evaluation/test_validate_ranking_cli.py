"""`changeover validate` of a ranker that answers lists of item ids, against a real server: judged
on lists of relevant items or on (query, item, relevance) rows, broken down by `--segment`, with
`per_segment` rules; bad input exits 2 naming the field; a rollout's `gate.segment` is honoured."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, running_server

ITEMS = np.arange(100, 160)
PREDICTOR = """import json
from pathlib import Path

import numpy as np

ITEMS = np.arange(100, 160)


class Model:
    def load(self, folder):
        self.config = json.loads((Path(folder) / "config.json").read_text())

    def predict(self, inputs):
        users = np.asarray(inputs["user_id"]).reshape(-1).astype(np.int64)
        u, i = users.reshape(-1, 1), ITEMS.reshape(1, -1)
        scores = ((u * 7919 + i * 104729) % 1009) / 1009.0 + self.config["noise"] * np.sin(u * 3.7 + i * 1.3)
        reverse = self.config.get("reverse_region")
        if reverse is not None:
            region = np.where(users % 20 == 1, 1, np.where(users % 2 == 0, 0, 2))
            scores = np.where((region == reverse)[:, None], -scores, scores)
        return {"items": ITEMS[np.argsort(-scores, axis=1, kind="stable")[:, :10]]}
"""
PER_SEGMENT = "require:\n  ndcg_at_10: {not_worse_than: champion, margin: 0.1, per_segment: true}\n"


def region(users: np.ndarray) -> np.ndarray:
    return np.where(users % 20 == 1, 1, np.where(users % 2 == 0, 0, 2))


def recommender(folder: Path, **config: object) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.yaml").write_text(
        "runtime: python\npredictor: predictor:Model\ntask: ranking\n"
        "inputs: [{name: user_id, datatype: INT64, shape: [-1]}]\n"
        "outputs: [{name: items, datatype: INT64, shape: [-1, 10]}]\n")  # role ranking: inferred from the name
    (folder / "predictor.py").write_text(PREDICTOR)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    users = np.arange(300)
    u, i = users.reshape(-1, 1), ITEMS.reshape(1, -1)
    relevant = ITEMS[np.argsort(-(((u * 7919 + i * 104729) % 1009) / 1009.0), axis=1)[:, :5]]
    lists = pd.DataFrame({"user_id": users, "region": region(users),
                          "relevant": [" ".join(map(str, r)) for r in relevant]})
    lists.to_csv(folder / "holdout.csv", index=False)
    lists[lists["region"] != 1].to_csv(folder / "no_region1.csv", index=False)
    rows = pd.DataFrame([(u, item, 1) for u, rel in zip(users, relevant, strict=True) for item in rel]
                        + [(u, 159, 0) for u in users if 159 not in set(relevant[u])],
                        columns=["user_id", "product", "relevance"])
    rows.to_csv(folder / "rows.csv", index=False)
    lists.assign(relevant=np.where(users == 4, "[101, 102", lists["relevant"])).to_csv(folder / "broken.csv",
                                                                                       index=False)
    (folder / "better.yaml").write_text("require:\n  ndcg_at_10: {better_than: champion}\n"
                                        "  coverage_at_10: {min: 0.01}\n")
    (folder / "per_segment.yaml").write_text(PER_SEGMENT)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("validate-ranking")
    with running_server(root / "home", env={"COLUMNS": "250"}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        try:
            for number, config in enumerate([{"noise": 0.6}, {"noise": 0.0}, {"noise": 0.0, "reverse_region": 1}], 1):
                pushed = pusher.push(recommender(root / f"v{number}", **config), name="recs", labels={}, runtime=None,
                                     trust=True)
                assert pushed["version"] == number
            scorer = python_model(root / "scorer", "return inputs['x'].sum(axis=1)",
                                  outputs="[{name: score, datatype: FP64, shape: [-1]}]")
            assert pusher.push(scorer, name="recs", labels={}, runtime=None, trust=True)["version"] == 4
        finally:
            pusher.close()
        with srv.client() as api:
            assert api.put("/api/models/recs/aliases/champion", json={"version": 1}).status_code == 200
        yield srv


RANKING = ("--task", "ranking", "--target", "relevant")


def test_a_list_ranker_is_gated_on_lists_of_relevant_items(server: ServerProcess, data: Path, tmp_path: Path) -> None:
    report = tmp_path / "gate.html"
    result = server.cli("validate", "recs@2", "--data", str(data / "holdout.csv"), *RANKING,
                        "--policy", str(data / "better.yaml"), "--report", str(report), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert (out["verdict"], out["answers"], out["n_rows"], out["n_queries"]) == ("pass", "lists", 300, 300)
    m = out["metrics"]
    assert m["precision_at_5"]["candidate"] == 1.0 and m["recall_at_5"]["candidate"] == 1.0
    assert m["mrr"]["candidate"] == 1.0 and m["hit_rate_at_10"]["candidate"] == 1.0
    assert m["ndcg_at_10"]["ci_low"] > 0 and 0 < m["coverage_at_10"]["candidate"] <= 1
    assert "Verdict: PASS" in report.read_text()


def test_a_list_ranker_is_gated_on_query_item_relevance_rows(server: ServerProcess, data: Path) -> None:
    result = server.cli("validate", "recs@2", "--data", str(data / "rows.csv"), "--task", "ranking",
                        "--target", "relevance", "--query-column", "user_id", "--item-column", "product", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["n_queries"] == 300 and out["n_rows"] > 300
    assert out["metrics"]["ndcg_at_5"]["candidate"] == pytest.approx(1.0)


def test_v3_passes_a_holdout_lacking_region_1_and_fails_region_1_per_segment(server: ServerProcess, data: Path) -> None:
    args = ("--against", "2", *RANKING, "--segment", "region", "--policy", str(data / "per_segment.yaml"))
    lacking = server.cli("validate", "recs@3", "--data", str(data / "no_region1.csv"), *args)
    assert lacking.returncode == 0, lacking.stdout + lacking.stderr
    present = server.cli("validate", "recs@3", "--data", str(data / "holdout.csv"), *args)
    assert present.returncode == 1, present.stdout + present.stderr
    text = " ".join(present.stdout.split())
    assert "in region=1" in text and "by segment" in text and "verdict: fail" in text
    as_json = json.loads(server.cli("validate", "recs@3", "--data", str(data / "holdout.csv"), *args, "--json").stdout)
    verdicts = {r.get("segment"): r["passed"] for r in as_json["rules"]}
    assert verdicts == {None: True, "0": True, "1": False, "2": True}
    assert as_json["segments"]["1"]["metrics"]["ndcg_at_10"]["candidate"] == 0.0


@pytest.mark.parametrize(("file", "extra", "problem"), [
    ("broken.csv", (), "column 'relevant': row 6: not a JSON list or object"),
    ("holdout.csv", ("--segment", "nope"), "segment column 'nope' is missing"),
    ("holdout.csv", ("--policy", "per_segment.yaml"), "per_segment needs a segment column"),
    ("rows.csv", ("--query-column", "user_id"), "give the item column"),
    ("holdout.csv", ("--against", "4"), "v4 answers one score per (query, item) row and v2 a list of item ids"),
], ids=["broken-list", "missing-segment", "per-segment-without-segment", "numbers-without-item-column", "mixed"])
def test_bad_input_exits_2_naming_the_problem(server: ServerProcess, data: Path, file: str, extra: tuple[str, ...],
                                              problem: str) -> None:
    extra = tuple(str(data / e) if e.endswith(".yaml") else e for e in extra)
    target = ("--target", "relevance") if file == "rows.csv" else ("--target", "relevant")
    result = server.cli("validate", "recs@2", "--data", str(data / file), "--task", "ranking", *target, *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert problem in " ".join(result.stderr.split()), result.stderr


def test_the_api_answers_bad_ranking_data_with_a_422_naming_the_field(server: ServerProcess, data: Path) -> None:
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=120) as api:
        response = api.post("/api/models/recs/versions/2/validate", params={
            "task": "ranking", "target": "relevant", "filename": "broken.csv"}, content=(data / "broken.csv").read_bytes())
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == "data" and "row 6" in json.dumps(body)


def test_a_rollouts_gate_segment_binds_each_segment(server: ServerProcess, data: Path, tmp_path: Path) -> None:
    with server.client() as api:
        assert api.put("/api/models/recs/aliases/champion", json={"version": 2}).status_code == 200
    spec = tmp_path / "rollout.yaml"
    spec.write_text(f"""model: recs
candidate: "3"
gate:
  data: {data / 'holdout.csv'}
  task: ranking
  target: relevant
  segment: region
  {PER_SEGMENT.replace(chr(10), chr(10) + '  ').rstrip()}
canary:
  steps: [50]
  bake: 2s
""")
    result = server.cli("apply", str(spec), "--timeout", "120")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the offline gate failed: no traffic was moved" in result.stdout
    with server.client() as api:
        gate = api.get("/api/models/recs/versions/3").json()["gate"]
    assert gate["segment_column"] == "region"
    assert [r["segment"] for r in gate["rules"] if not r["passed"]] == ["1"]
