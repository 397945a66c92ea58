"""`apply` (POST /api/rollouts, `changeover apply`) runs the road's first step before any live
traffic: the spec checked against the model, then the compatibility step (signature, then a
replay of recorded production traffic). Against a real server that records every request."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from changeover.cli.client import Client
from changeover.domain.spec import JudgeSpec
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, running_server

RECORDED = 12
X64 = "[{name: x, datatype: FP64, shape: [-1, 2]}]"
X32 = "[{name: x, datatype: FP32, shape: [-1, 2]}]"
Y = "[{name: y, datatype: FP64, shape: [-1]}]"
LABEL = "[{name: label, datatype: INT64, shape: [-1]}]"

MODELS: dict[str, list[tuple[str, str, str]]] = {  # model -> versions (predict body, inputs, outputs)
    "m": [
        ("return {'y': inputs['x'].sum(axis=1)}", X64, Y),  # v1, the champion
        ("return {'y': inputs['x'].sum(axis=1) * 1.0}", X64, Y),  # v2: the same contract
        ("return {'y': inputs['x'].sum(axis=1).astype(np.float64)}", X32, Y),  # v3: FP64 narrowed to FP32
        # v4: the same contract, raises on every row production sends (the warm-up's zeros pass)
        ("if (inputs['x'] != 0).any():\n    raise ValueError('cannot read this row')\nreturn {'y': inputs['x'].sum(axis=1)}",
         X64, Y),
    ],
    # FP32 clients, a candidate widened to FP64; no recorded traffic at all
    "w": [("return {'y': inputs['x'].sum(axis=1).astype(np.float64)}", X32, Y),
          ("return {'y': inputs['x'].sum(axis=1)}", "[{name: x, datatype: FP64, shape: [-1, 2]}]", Y)],
    "c": [("return {'label': (inputs['x'][:, 0] > 0).astype(np.int64)}", X64, LABEL),
          ("return {'label': (inputs['x'][:, 0] > 0.1).astype(np.int64)}", X64, LABEL)],
}


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("apply")
    with running_server(root / "home", env={"CHANGEOVER_RECORD_RATE": "1.0", "COLUMNS": "200"}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        for model, versions in MODELS.items():
            for number, (body, inputs, outputs) in enumerate(versions, start=1):
                folder = python_model(root / f"{model}{number}", body, inputs=inputs, outputs=outputs)
                assert pusher.push(folder, name=model, labels={}, runtime=None, trust=True)["version"] == number
        pusher.close()
        with srv.client() as api:
            for model in MODELS:
                assert api.put(f"/api/models/{model}/aliases/champion", json={"version": 1}).status_code == 200
        send_recorded_traffic(srv)
        yield srv


def send_recorded_traffic(srv: ServerProcess) -> None:
    last = ""
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        for i in range(RECORDED):
            body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0 + i, 2.0]}]}
            r = wait_until(lambda body=body: (r := http.post("/v2/models/m/infer", json=body)).status_code == 200 and r,
                           "the champion to serve")
            assert r.headers["x-changeover-version"] == "1"
            last = r.headers["x-request-id"]
        # the request log is written in order: once the last request takes feedback, every one is stored
        wait_until(lambda: http.post("/v1/feedback", json={"request_id": last, "label": 3.0}).status_code == 201,
                   "the request log")


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        client.timeout = httpx.Timeout(120)
        yield client
        for model in MODELS:  # leave no rollout running for the next test
            if client.get("/api/rollouts", params={"model": model, "active": True}).json():
                client.post(f"/api/models/{model}/rollout/abort")
                wait_until(lambda model=model: not client.get("/api/rollouts",
                                                              params={"model": model, "active": True}).json(),
                           "the rollout to end")


def events(api: httpx.Client, model: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in api.get("/api/events", params={"model": model, "limit": 1000}).json() if e["kind"] == kind]


def long_canary(candidate: str, model: str = "m", **extra: Any) -> dict[str, Any]:
    return {"model": model, "candidate": candidate, "canary": {"steps": [10], "bake": "10m"}, **extra}


def test_a_breaking_candidate_is_refused_with_the_evidence_before_any_traffic(api: httpx.Client) -> None:
    before = len(api.get("/api/rollouts", params={"model": "m"}).json())
    r = api.post("/api/rollouts", json={"spec": long_canary("3")})
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["field"] == "candidate" and "m v3 is not compatible with v1" in body["error"]
    compat = body["compat"]
    assert (compat["verdict"], compat["candidate"], compat["against"]) == ("fail", 3, 1)
    assert [(c["kind"], c["tensor"], c["breaking"]) for c in compat["changes"]] == [
        ("input_datatype_narrower", "x", True)]
    assert "FP64 -> FP32" in compat["causes"][0]
    # the replay: today's FP64 requests, each refused by the candidate, with counts and examples
    replay = compat["replay"]
    assert replay["requests"] == RECORDED and replay["errors"] == RECORDED
    assert replay["error_kinds"] == {"InvalidInput": RECORDED}
    assert "expected datatype FP32, got datatype FP64" in replay["error_examples"][0]["error"]
    assert f"{RECORDED} of {RECORDED} recorded requests failed in the candidate" in compat["causes"]

    # nothing started, nothing loaded into the gateway, and the audit log says why
    assert len(api.get("/api/rollouts", params={"model": "m"}).json()) == before
    loaded = api.get("/api/status").json()["gateway"]["loaded"]
    assert {"model": "m", "version": 3} not in loaded
    (event,) = events(api, "m", "compat.failed")
    assert "compat of v3 against v1: fail" in event["message"] and "input_datatype_narrower x" in event["message"]
    assert event["evidence"]["verdict"] == "fail" and event["evidence"]["rollout"] is None
    assert event["evidence"]["replay"]["errors"] == RECORDED
    assert event["actor"] == "api"


def test_a_candidate_failing_on_recorded_traffic_is_refused(api: httpx.Client) -> None:
    r = api.post("/api/rollouts", json={"spec": long_canary("4")})
    assert r.status_code == 409, r.text
    compat = r.json()["compat"]
    assert compat["changes"] == []  # the signature is fine: the replay shows the problem
    assert compat["replay"]["error_kinds"] == {"ValueError": RECORDED}
    assert "cannot read this row" in compat["replay"]["error_examples"][0]["error"]
    assert compat["causes"] == [f"{RECORDED} of {RECORDED} recorded requests failed in the candidate"]
    assert any(e["evidence"]["candidate"] == 4 for e in events(api, "m", "compat.failed"))


def test_a_compatible_candidate_starts_with_its_compat_evidence(api: httpx.Client) -> None:
    r = api.post("/api/rollouts", json={"spec": long_canary("2")})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["compat"]["verdict"] == "pass" and created["compat"]["causes"] == []
    assert created["compat"]["replay"]["requests"] == RECORDED and created["compat"]["replay"]["errors"] == 0
    # the plan: what the first step needs before it may pass, at the champion's traffic
    assert "step 1 (10%)" in created["plan"][0], created["plan"]
    assert any(line.strip().startswith("error_rate needs ~") for line in created["plan"]), created["plan"]
    rollout = api.get(f"/api/rollouts/{created['id']}").json()
    assert [(a["kind"], a["outcome"]) for a in rollout["analyses"]][:1] == [("compat", "pass")]
    kinds = [e["kind"] for e in rollout["events"] if "." in e["kind"]]
    assert kinds[:2] == ["compat.passed", "rollout.created"]
    passed = next(e for e in rollout["events"] if e["kind"] == "compat.passed")
    assert f"({RECORDED} recorded requests replayed)" in passed["message"]
    assert passed["evidence"]["rollout"] == created["id"] and passed["evidence"]["replay"]["errors"] == 0


def test_a_safe_widening_passes_and_no_traffic_means_the_signature_alone(api: httpx.Client) -> None:
    r = api.post("/api/rollouts", json={"spec": long_canary("2", model="w")})
    assert r.status_code == 201, r.text
    compat = r.json()["compat"]
    assert compat["verdict"] == "pass"
    assert [(c["kind"], c["breaking"]) for c in compat["changes"]] == [("input_datatype_wider", False)]
    assert compat["replay"]["requests"] == 0
    assert compat["replay"]["note"].startswith("no recorded requests to replay")
    (event,) = events(api, "w", "compat.passed")
    assert "no recorded requests to replay" in event["message"]


SHADOW = {"sample": 1.0, "until": {"requests": 10}}


@pytest.mark.parametrize(("model", "spec", "field", "reason"), [
    ("m", {"shadow": SHADOW | {"require": {"mae": {"max": 0.5}}}}, "shadow.require.mae",
     "unknown shadow metric; known: "),
    ("m", {"shadow": SHADOW | {"require": {"agreement": {"min": 0.9}}}}, "shadow.require.agreement",
     "agreement is measured for classification models only; v2 is a regression model (outputs: y (FP64))"),
    ("m", {"gate": {"data": "h.csv", "task": "regression", "require": {"accuracy": {"min": 0.9}}}},
     "gate.require.accuracy", "unknown metric for regression; known: "),
    ("m", {"canary": {"judge": {"label_accuracy": {}}}}, "canary.judge.label_accuracy",
     "needs a classifier: an output named 'label'"),
    pytest.param("c", {"canary": {"judge": {"mae": {"max_ratio": 1.1}}}}, "canary.judge.mae",
                 "needs a regressor", marks=pytest.mark.skipif("mae" not in JudgeSpec.model_fields,
                                                                reason="the spec has no canary.judge.mae yet")),
])
def test_a_criterion_that_cannot_be_judged_is_a_422_naming_the_field(
        api: httpx.Client, model: str, spec: dict[str, Any], field: str, reason: str) -> None:
    before = len(api.get("/api/events", params={"model": model, "limit": 1000}).json())
    r = api.post("/api/rollouts", json={"spec": {"model": model, "candidate": "2", **spec}})
    assert r.status_code == 422, r.text
    (problem,) = r.json()["problems"]
    assert problem["field"] == field and reason in problem["reason"], problem
    assert field in r.json()["error"]
    assert not api.get("/api/rollouts", params={"model": model, "active": True}).json()
    assert len(api.get("/api/events", params={"model": model, "limit": 1000}).json()) == before  # nothing ran


def test_the_cli_apply_prints_the_refusal_and_exits_1(server: ServerProcess, api: httpx.Client,
                                                      tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text('model: m\ncandidate: "3"\ncanary: {steps: [10], bake: 10m}\n')
    result = server.cli("apply", str(spec), "--no-follow")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "m v3 failed the compatibility step against v1; no rollout started" in result.stderr
    assert "input_datatype_narrower" in result.stderr
    assert f"replayed {RECORDED} recorded requests: {RECORDED} errors" in result.stderr
    assert "expected datatype FP32, got datatype FP64" in result.stderr

    spec.write_text('model: m\ncandidate: "2"\ncanary: {steps: [10], bake: 10m}\n')
    result = server.cli("apply", str(spec), "--no-follow")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"compatibility: pass — 0 signature changes, none breaking; {RECORDED} recorded requests replayed, "
            "0 errors") in result.stdout

    spec.write_text('model: m\ncandidate: "2"\nshadow: {sample: 1.0, until: {requests: 5}, require: {mae: {max: 1}}}\n')
    result = server.cli("apply", str(spec), "--no-follow")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "invalid rollout spec" in result.stderr and "  shadow.require.mae: unknown shadow metric" in result.stderr
