"""The interleaving stage against a real server: two python-runtime rankers, a rollout with an
`interleave` stage, requests with sticky keys answered with the merged list, click feedback
from a simple click model, and the controller's verdict: a worse ranker is rolled back in the
interleaving stage, an equally good one passes it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from changeover.cli.client import Client
from changeover.domain.interleaving import team_draft
from changeover.domain.policy import BUCKETS, bucket_of
from changeover.gateway.interleave import coin
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, running_server

INPUTS = "[{name: user_id, datatype: INT64, shape: [-1]}]"
OUTPUTS = "[{name: items, datatype: INT64, shape: [-1, 10], role: ranking}]"
REGRESSOR_OUTPUTS = "[{name: y, datatype: FP64, shape: [-1]}]"
LISTS = "u = inputs['user_id'].reshape(-1, 1)\nbase = u * 100 + np.arange(10)\n"
VERSIONS = {
    1: LISTS + "return {'items': base.astype(np.int64)}",
    # worse: reverses the list of every even user
    2: LISTS + "return {'items': np.where(u % 2 == 0, base[:, ::-1], base).astype(np.int64)}",
    # as good: its first two items swapped, right for the users whose best item is u*100+1
    3: LISTS + "return {'items': base[:, [1, 0, 2, 3, 4, 5, 6, 7, 8, 9]].astype(np.int64)}",
    # 4 is a regressor (below); 5 reverses every list, fails for users 1, 6, 11, ... and is
    # slow for users 2, 7, 12, ...
    5: LISTS + "if (u % 5 == 1).any():\n    raise ValueError('no list for you')\n"
       "if (u % 5 == 2).any():\n    time.sleep(1.0)\n"
       "return {'items': base[:, ::-1].astype(np.int64)}",
}


def v1_list(user: int) -> list[int]:
    return [user * 100 + i for i in range(10)]


def best_item(user: int) -> int:
    """The click model's truth: a user's best item, u*100 or u*100+1 (independent of u's parity)."""
    return user * 100 + (user // 2) % 2


def clicks(user: int, shown: list[int]) -> list[int]:
    """The user clicks their best item when it is shown in the top 4, nothing else."""
    return [best_item(user)] if best_item(user) in shown[:4] else []


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


CLIENTS: dict[str, httpx.Client] = {}


def ranker(folder: Path, body: str, outputs: str = OUTPUTS) -> Path:
    python_model(folder, body, inputs=INPUTS, outputs=outputs)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("interleave")
    # nothing recorded: the compat replay would hand v5 a request of a user it fails for
    with running_server(root / "home", env={"CHANGEOVER_CONTROLLER_TICK_S": "0.3", "CHANGEOVER_RECORD_RATE": "0"}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        try:
            bodies = {**VERSIONS, 4: "return {'y': inputs['user_id'].astype(np.float64)}"}
            for number in sorted(bodies):
                folder = ranker(root / f"v{number}", bodies[number], REGRESSOR_OUTPUTS if number == 4 else OUTPUTS)
                assert pusher.push(folder, name="recs", labels={}, runtime=None, trust=True)["version"] == number
        finally:
            pusher.close()
        with httpx.Client(base_url=srv.url, timeout=30) as http:  # one connection, kept alive
            CLIENTS[srv.url] = http
            yield srv


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        client.put("/api/models/recs/aliases/champion", json={"version": 1}).raise_for_status()
        body = {"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [5]}]}

        def v1_serves() -> bool:
            r = CLIENTS[server.url].post("/v2/models/recs/infer", json=body)
            return r.status_code == 200 and r.json()["outputs"][0]["data"] == v1_list(5)

        wait_until(v1_serves, "v1 to serve")
        yield client
        if client.get("/api/rollouts", params={"model": "recs", "active": True}).json():
            client.post("/api/models/recs/rollout/abort")


def answer(srv: ServerProcess, user: int) -> tuple[list[int], str, str]:
    """The list a user is shown, the request id, and the version that answered."""
    body = {"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [user]}]}
    r = CLIENTS[srv.url].post("/v2/models/recs/infer", json=body, headers={"x-changeover-key": f"user-{user}"})
    assert r.status_code == 200, r.text
    return r.json()["outputs"][0]["data"], r.headers["x-request-id"], r.headers["x-changeover-version"]


def serve(srv: ServerProcess, user: int) -> tuple[list[int], str]:
    shown, request_id, version = answer(srv, user)
    assert version == "1"  # interleaved or not, the champion answers
    return shown, request_id


def spec(candidate: int, **interleave: Any) -> dict[str, Any]:
    return {"model": "recs", "candidate": str(candidate), "watch": 0,
            # a generous timeout: a cold candidate (fresh venv, no bytecode yet) is not "late"
            "interleave": {"sample": 1.0, "k": 10, "timeout": "5s",
                           "until": {"requests": 200, "or_after": "2m"}} | interleave}


def rollout(api: httpx.Client, rid: int) -> dict[str, Any]:
    return api.get(f"/api/rollouts/{rid}").json()


def drive(srv: ServerProcess, api: httpx.Client, rid: int, candidate_list: Callable[[int], list[int]],
          *, limit: int = 1500) -> tuple[dict[str, Any], int, int]:
    """Users in turn ask, see the merged list, and click; until the rollout leaves interleaving."""
    wait_until(lambda: rollout(api, rid)["status"]["phase"] == "interleaving", "the interleaving to start")
    # the policy reaches the gateway a moment after the phase: wait for the first merged list
    wait_until(lambda: serve(srv, 2)[0] != v1_list(2), "the first interleaved answer")
    merged = served = 0
    users = iter(range(limit))
    while served < limit and rollout(api, rid)["status"]["phase"] == "interleaving":
        # a round of 20 users, then their clicks (a click arrives after the list is shown)
        shown_to: list[tuple[int, list[int], str]] = []
        for n in (next(users) for _ in range(20)):
            user = n % 40
            shown, request_id, version = answer(srv, user)
            if version != "1":  # promoted: the interleaving is over
                break
            served += 1
            if list(team_draft(v1_list(user), candidate_list(user), 10, coin(request_id)).items) == shown:
                merged += 1
            shown_to.append((user, shown, request_id))
        for user, shown, request_id in shown_to:
            clicked = clicks(user, shown)
            if clicked:
                r = CLIENTS[srv.url].post("/v1/feedback", json={"request_id": request_id, "label": clicked})
                assert r.status_code == 201, r.text
    done = wait_until(lambda: (r := rollout(api, rid))["status"]["phase"] != "interleaving" and r, "a verdict")
    return done, merged, served


def test_a_worse_ranker_is_rolled_back_in_the_interleaving_stage(server: ServerProcess, api: httpx.Client) -> None:
    started = api.post("/api/rollouts", json={"spec": spec(2, tolerance=0.05)})
    assert started.status_code == 201, started.text
    rid = started.json()["id"]

    def v2(user: int) -> list[int]:
        return v1_list(user)[::-1] if user % 2 == 0 else v1_list(user)

    done, merged, served = drive(server, api, rid, v2)
    assert done["status"]["phase"] == "rolled_back", done["status"]["message"]
    # every answer was the team-draft merge, reproducible from the request id (bar a late candidate)
    assert served >= 20 and merged >= 0.9 * served
    kinds = [e["kind"] for e in done["events"]]
    assert "interleave.started" in kinds and "interleave.failed" in kinds
    (look,) = [a for a in done["analyses"] if a["kind"] == "interleave"]
    assert look["outcome"] == "fail"
    pref = look["evidence"]["preference"]
    assert pref["wins_champion"] > 0 and pref["wins_candidate"] == 0  # odd users: the same list, a tie
    assert "champion preferred beyond tolerance" in done["status"]["message"]
    # the champion alone answers again
    wait_until(lambda: serve(server, 2)[0] == v1_list(2), "the champion's own list after the rollback")
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'changeover_interleave_calls_total{model="recs",outcome="merged"}' in metrics


def test_an_equally_good_ranker_passes_the_interleaving(server: ServerProcess, api: httpx.Client) -> None:
    started = api.post("/api/rollouts", json={"spec": spec(3, tolerance=0.2, min_decided=100,
                                                           until={"requests": 100, "or_after": "2m"})})
    assert started.status_code == 201, started.text
    rid = started.json()["id"]

    def v3(user: int) -> list[int]:
        items = v1_list(user)
        return [items[1], items[0], *items[2:]]

    done, merged, served = drive(server, api, rid, v3)
    assert merged >= 0.9 * served
    assert done["status"]["phase"] in ("promoting", "promoted"), done["status"]["message"]
    (look,) = [a for a in done["analyses"] if a["kind"] == "interleave"]
    assert look["outcome"] == "pass"
    pref = look["evidence"]["preference"]
    assert pref["requests"] >= 100 and abs(pref["wins_champion"] - pref["wins_candidate"]) <= 2
    wait_until(lambda: api.get("/api/models/recs").json()["aliases"]["champion"] == 3, "v3 to be champion")


def test_interleaving_a_model_that_answers_no_ranking_is_refused(server: ServerProcess, api: httpx.Client) -> None:
    r = api.post("/api/rollouts", json={"spec": spec(4)})
    assert r.status_code == 422, r.text
    (problem,) = r.json()["problems"]
    assert problem["field"] == "interleave" and "an output of role ranking" in problem["reason"]


USERS = 40


def test_interleaving_is_sticky_by_key_and_a_failing_or_late_candidate_leaves_the_champion_answering(
        server: ServerProcess, api: httpx.Client) -> None:
    spec5 = spec(5, sample=0.5, timeout="200ms")
    spec5["interleave"]["until"] = {"or_after": "5m"}
    started = api.post("/api/rollouts", json={"spec": spec5})
    assert started.status_code == 201, started.text
    rid = started.json()["id"]
    wait_until(lambda: rollout(api, rid)["status"]["phase"] == "interleaving", "the interleaving to start")
    sampled = {u for u in range(USERS) if bucket_of("recs", f"user-{u}", "interleave") < 0.5 * BUCKETS}
    assert 10 < len(sampled) < 30
    merged_users = {u for u in sampled if u % 5 not in (1, 2)}
    probe = min(merged_users)
    wait_until(lambda: serve(server, probe)[0] != v1_list(probe), "the first interleaved answer")
    before = interleave_calls(server)
    seen: dict[int, set[bool]] = {}
    slowest = 0.0
    for _ in range(2):
        for user in range(USERS):
            began = time.monotonic()
            shown, _ = serve(server, user)
            if user in sampled and user % 5 == 2:
                slowest = max(slowest, time.monotonic() - began)
            seen.setdefault(user, set()).add(shown != v1_list(user))
    # the same users, every time: those whose key falls in the sample, bar the candidate's failures
    assert {u for u, merged in seen.items() if merged == {True}} == merged_users
    assert {u for u, merged in seen.items() if merged == {False}} == set(range(USERS)) - merged_users
    after = interleave_calls(server)
    for outcome, rest in (("candidate_error", 1), ("timeout", 2)):
        expected = 2 * len({u for u in sampled if u % 5 == rest})
        assert after.get(outcome, 0) - before.get(outcome, 0) == expected, outcome
    assert after.get("merged", 0) - before.get("merged", 0) == 2 * len(merged_users)
    assert 0 < slowest < 0.9  # a late candidate costs the timeout, not its own second
    assert rollout(api, rid)["status"]["phase"] == "interleaving"  # no clicks: nothing to judge yet


def interleave_calls(srv: ServerProcess) -> dict[str, float]:
    text = httpx.get(f"{srv.url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "changeover_interleave_calls":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("model") == "recs":
                    out[sample.labels["outcome"]] = sample.value
    return out
