"""A ranker's shadow over real HTTP: two python-runtime rankers (`task: ranking`, outputs of role
``ranking`` and ``scores``, named differently in each version) mirrored by a real `changeover
serve`, compared on their item ids, overall and per segment; a shadow whose mirror drops most
calls reports the drops by cause and is not a pass; apply refuses ranking figures for a
model that answers no list of ids."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from changeover.cli.client import Client
from serverproc import TOKEN, ServerProcess, running_server

P = 0.9
SCORES = "scores = np.tile(np.linspace(1.0, 0.1, 10), (len(u), 1)).astype(np.float32)\n"
TOP = "top = u * 100 + np.arange(1, 11)\n"
# v2 keeps 4 of the champion's top 10 (the same first 4, in order) for users below 1000 — with the
# very same scores, position by position — and the whole list for the others
VERSIONS: dict[int, tuple[str, str, str]] = {
    1: ("items", "scores", TOP + SCORES + "return {'items': top.astype(np.int64), 'scores': scores}"),
    2: ("recs", "relevance", TOP + SCORES +
        "other = np.concatenate([top[:, :4], u * 100 + np.arange(51, 57)], axis=1)\n"
        "recs = np.where(u < 1000, other, top)\n"
        "return {'recs': recs.astype(np.int64), 'relevance': scores}"),
    # sleeps far past the shadow's timeout on live rows (the warm-up's zeros answer at once)
    3: ("items", "scores", "if (u != 0).any():\n    time.sleep(5)\n" + TOP + SCORES +
        "return {'items': top.astype(np.int64), 'scores': scores}"),
}


def ranker(folder: Path, ranking: str, scores: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.yaml").write_text(
        "runtime: python\npredictor: predictor:Model\ntask: ranking\n"
        "inputs: [{name: user_id, datatype: INT64, shape: [-1]}]\n"
        f"outputs:\n  - {{name: {ranking}, datatype: INT64, shape: [-1, 10], role: ranking}}\n"
        f"  - {{name: {scores}, datatype: FP32, shape: [-1, 10], role: scores}}\n")
    lines = "".join(f"        {line}\n" for line in ("u = inputs['user_id'].reshape(-1, 1)\n" + body).splitlines())
    (folder / "predictor.py").write_text("import time\nimport numpy as np\n\n\nclass Model:\n"
                                         "    def load(self, folder):\n        pass\n\n"
                                         "    def predict(self, inputs):\n" + lines)
    return folder


def regressor(folder: Path, factor: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.yaml").write_text(
        "runtime: python\npredictor: predictor:Model\ninputs: [{name: x, datatype: FP64, shape: [-1, 2]}]\n"
        "outputs: [{name: variable, datatype: FP64, shape: [-1, 1]}]\n")
    (folder / "predictor.py").write_text("import numpy as np\n\n\nclass Model:\n    def load(self, folder):\n"
                                         "        pass\n\n    def predict(self, inputs):\n"
                                         f"        return {{'variable': inputs['x'][:, :1] * {factor}}}\n")
    return folder


def wait_until(check: Callable[[], Any], what: str, timeout: float = 40.0) -> Any:
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
    root = tmp_path_factory.mktemp("shadow-ranking")
    with running_server(root / "home", env={"COLUMNS": "250"}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        try:
            for number, (ranking, scores, body) in VERSIONS.items():
                pushed = pusher.push(ranker(root / f"v{number}", ranking, scores, body), name="recs", labels={},
                                     runtime=None, trust=True)
                assert pushed["version"] == number
            for number in (1, 2):
                assert pusher.push(regressor(root / f"reg{number}", number + 1.0), name="reg", labels={}, runtime=None,
                                   trust=True)["version"] == number
        finally:
            pusher.close()
        with srv.client() as api:
            for model in ("recs", "reg"):
                api.put(f"/api/models/{model}/aliases/champion", json={"version": 1}).raise_for_status()
        wait_until(lambda: infer(srv, 1).status_code == 200, "the champion to serve")
        yield srv


def infer(srv: ServerProcess, user: int, region: str = "us") -> httpx.Response:
    body = {"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [user]}]}
    return httpx.post(f"{srv.url}/v2/models/recs/infer", json=body, headers={"x-region": region}, timeout=30)


def send(srv: ServerProcess, users: list[int], region: str) -> None:
    """Each answer is the champion's: its own output names, its own ids."""
    for user in users:
        r = infer(srv, user, region)
        assert r.status_code == 200 and r.headers["x-changeover-version"] == "1", r.text
        items = next(o for o in r.json()["outputs"] if o["name"] == "items")
        assert items["data"] == [user * 100 + i for i in range(1, 11)]


def report(srv: ServerProcess, version: int, html: bool = False) -> dict[str, Any]:
    with srv.client() as api:
        r = api.get("/api/models/recs/shadows/report", params={"version": version, "html": html})
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_shadows(srv: ServerProcess, versions: list[int]) -> None:
    def adopted() -> bool:
        with srv.client() as api:
            status = api.get("/api/status").json()
        policy = next(m["policy"] for m in status["models"] if m["model"] == "recs")
        return ([s["version"] for s in policy["shadows"]] == versions
                and status["gateway"]["generations"].get("recs") == policy["generation"])
    wait_until(adopted, f"the gateway to mirror to {versions}")


def start_shadow(srv: ServerProcess, version: int, **body: Any) -> None:
    with srv.client() as api:
        r = api.post("/api/models/recs/shadows", json={"version": str(version), "sample": 1.0, **body})
    assert r.status_code == 201, r.text
    wait_for_shadows(srv, [version])


def stop_shadow(srv: ServerProcess, version: int) -> None:
    with srv.client() as api:
        assert api.delete("/api/models/recs/shadows", params={"version": str(version)}).json()["stopped"] == [version]
    wait_for_shadows(srv, [])


def rollout(srv: ServerProcess, model: str, require: dict[str, Any]) -> httpx.Response:
    spec = {"model": model, "candidate": "2",
            "shadow": {"sample": 1.0, "until": {"requests": 10}, "require": require}}
    with srv.client() as api:
        return api.post("/api/rollouts", json={"spec": spec})


def test_apply_refuses_ranking_figures_for_a_model_that_answers_no_list(server: ServerProcess) -> None:
    r = rollout(server, "reg", {"overlap_at_10": {"min": 0.5}, "kendall_tau": {"min": 0.5}})
    assert r.status_code == 422, r.text
    problems = r.json()["problems"]
    assert [p["field"] for p in problems] == ["shadow.require.overlap_at_10", "shadow.require.kendall_tau"]
    assert all("an output of role ranking" in p["reason"] and "v2 is a regression model" in p["reason"]
               for p in problems)
    # for the ranker the ranking figures pass this check: only the unknown figure is refused
    r = rollout(server, "recs", {"overlap_at_10": {"min": 0.5}, "rbo": {"min": 0.5}, "ndcg": {"min": 0.5}})
    assert r.status_code == 422, r.text
    assert [p["field"] for p in r.json()["problems"]] == ["shadow.require.ndcg"]


def test_a_rankers_shadow_is_compared_on_item_ids_overall_and_per_segment(server: ServerProcess) -> None:
    start_shadow(server, 2, segment="header:x-region",
                 require={"overlap_at_10": {"min": 0.5}, "kendall_tau": {"min": 0.9}})
    send(server, list(range(1, 11)), "us")  # v2 keeps 4 of 10 ids, with the same scores at every position
    send(server, list(range(1001, 1011)), "eu")  # v2 answers the same list
    figures = wait_until(lambda: (f := report(server, 2)["figures"])["mirror"]["mirrored"] >= 20
                         and f["overall"]["pairs"] >= 20 and f, "20 mirrored calls in the report")

    assert figures["task"] == "ranking"
    overall, segments = figures["overall"], figures["segments"]
    assert (overall["pairs"], overall["compared"], overall["shadow_errors"]) == (20, 20, 0)
    assert overall["overlap_at_10"] == pytest.approx(0.7)  # (0.4 + 1.0) / 2: the ids, not the positions of scores
    assert overall["kendall_tau"] == pytest.approx(1.0)  # what both show, in the same order
    rbo_us = 4 / 10 * P**10 + (1 - P) / P * sum(min(d, 4) / d * P**d for d in range(1, 11))
    assert segments["us"]["overlap_at_10"] == pytest.approx(0.4) and segments["eu"]["overlap_at_10"] == 1.0
    assert segments["us"]["rbo"] == pytest.approx(rbo_us) and segments["eu"]["rbo"] == 1.0
    assert overall["rbo"] == pytest.approx((rbo_us + 1.0) / 2)
    assert figures["worst_segment"]["segment"] == "us"
    assert overall["distribution_distance"] == 0.0  # the scores alone cannot tell the two apart
    assert figures["mirror"] == {
        "mirrored": 20, "compared": 20, "dropped": 0, "compared_share": 1.0, "dropped_by": {},
        "counted_by_mirror": True, "sample": 1.0}

    text = server.cli("shadow", "report", "recs")
    assert text.returncode == 0, text.stderr
    assert "overlap@10 (item ids)" in text.stdout and "70.00%" in text.stdout
    assert "Kendall τ on the shared items" in text.stdout

    stop_shadow(server, 2)
    verdict = report(server, 2)["verdict"]
    assert verdict["verdict"] == "pass", verdict
    assert verdict["reason"] == "20 of 20 mirrored calls compared"


# last: its hung shadow calls keep two shadow threads for a few seconds
def test_a_shadow_that_drops_most_calls_reports_them_by_cause_and_does_not_pass(server: ServerProcess) -> None:
    start_shadow(server, 3, timeout_s=0.2, require={"overlap_at_10": {"min": 0.5}})
    send(server, list(range(1, 21)), "us")
    figures = wait_until(lambda: (f := report(server, 3)["figures"])["mirror"]["mirrored"] >= 20 and f,
                         "20 mirrored calls counted")
    mirror = figures["mirror"]
    assert mirror["mirrored"] == 20 and mirror["compared"] == 0 and mirror["dropped"] == 20
    # each of the shadow's two threads times out once, then stays busy: the other calls find no thread
    by = mirror["dropped_by"]
    assert set(by) <= {"timeout", "pool_busy"} and by.get("timeout", 0) >= 1 and by.get("pool_busy", 0) >= 10, by
    assert figures["overall"]["timeouts"] == by["timeout"]
    assert figures["missing"]["overlap_at_10"].startswith(f"no pair compared of {by['timeout']}: ")

    stop_shadow(server, 3)
    after = report(server, 3, html=True)
    verdict = after["verdict"]
    assert verdict["verdict"] == "inconclusive", verdict
    assert verdict["reason"].startswith("only 0 of 20 mirrored calls compared (0.0%), 20 dropped (")
    assert "a verdict needs at least 50% of them compared" in verdict["reason"]
    assert "Mirrored calls not compared" in after["html"] and "pool busy" in after["html"]
    with server.client() as api:
        events = api.get("/api/events", params={"model": "recs", "limit": 50}).json()
    assert any(e["kind"] == "analysis" and "shadow v3 inconclusive" in e["message"] for e in events)
