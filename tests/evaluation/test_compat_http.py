"""`changeover compat`: signatures compared, then recorded production traffic replayed through
the candidate, against a real server that records every request (CHANGEOVER_RECORD_RATE=1)."""

from __future__ import annotations

import json

import httpx
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, running_server

RECORDED = 20
X = "[{name: x, datatype: FP64, shape: [-1, 2]}]"
SUM = "return {'y': inputs['x'].sum(axis=1)}"

# version -> (predict body, inputs, outputs); version 1 is the champion
VERSIONS: dict[int, tuple[str, str, str]] = {
    1: (SUM, X, "[{name: y, datatype: FP64, shape: [-1]}]"),
    # the same contract, the same answers (other bytes, so another version)
    2: ("y = inputs['x'].sum(axis=1)\nreturn {'y': y * 1.0}", X, "[{name: y, datatype: FP64, shape: [-1]}]"),
    # the input renamed: today's requests send x
    3: ("return {'y': inputs['z'].sum(axis=1)}", "[{name: z, datatype: FP64, shape: [-1, 2]}]",
        "[{name: y, datatype: FP64, shape: [-1]}]"),
    # an extra required input that today's requests lack
    4: ("return {'y': inputs['x'].sum(axis=1) + inputs['w'][:, 0]}",
        "[{name: x, datatype: FP64, shape: [-1, 2]}, {name: w, datatype: FP64, shape: [-1, 1]}]",
        "[{name: y, datatype: FP64, shape: [-1]}]"),
    # the output renamed: clients read y
    5: ("return {'score': inputs['x'].sum(axis=1)}", X, "[{name: score, datatype: FP64, shape: [-1]}]"),
    # the output's datatype changed
    6: ("return {'y': inputs['x'].sum(axis=1).astype(np.int64)}", X, "[{name: y, datatype: INT64, shape: [-1]}]"),
    # raises on every row production sends (the warm-up's zeros pass)
    7: ("if (inputs['x'] != 0).any():\n    raise ValueError('cannot read this row')\nreturn {'y': inputs['x'].sum(axis=1)}",
        X, "[{name: y, datatype: FP64, shape: [-1]}]"),
    # answers NaN on every row production sends
    8: ("return {'y': np.where(inputs['x'][:, 0] != 0, np.nan, 0.0)}", X, "[{name: y, datatype: FP64, shape: [-1]}]"),
    # a new optional input: not breaking
    9: ("w = inputs.get('w')\nreturn {'y': inputs['x'].sum(axis=1) + (0.0 if w is None else w[:, 0])}",
        "[{name: x, datatype: FP64, shape: [-1, 2]}, {name: w, datatype: FP64, shape: [-1, 1], optional: true}]",
        "[{name: y, datatype: FP64, shape: [-1]}]"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("compat")
    with running_server(root / "home", env={"CHANGEOVER_RECORD_RATE": "1.0", "COLUMNS": "200"}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        for number, (body, inputs, outputs) in VERSIONS.items():
            pushed = pusher.push(python_model(root / f"v{number}", body, inputs=inputs, outputs=outputs),
                                 name="m", labels={}, runtime=None, trust=True)
            assert pushed["version"] == number
        pusher.close()
        with srv.client() as api:
            assert api.put("/api/models/m/aliases/champion", json={"version": 1}).status_code == 200
        send_recorded_traffic(srv)
        yield srv


def send_recorded_traffic(srv: ServerProcess) -> None:
    last = ""
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        for i in range(RECORDED):
            body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0 + i, 2.0]}]}
            r = http.post("/v2/models/m/infer", json=body)
            for _ in range(100):  # the first request may come before the gateway adopted the policy
                if r.status_code == 200:
                    break
                r = http.post("/v2/models/m/infer", json=body)
            assert r.status_code == 200, r.text
            assert r.headers["x-changeover-version"] == "1"
            last = r.headers["x-request-id"]
        # The request log is written off the critical path, in order; feedback for the last
        # request is accepted only once its row (and so every earlier one) is in the store.
        assert http.post("/v1/feedback", json={"request_id": last, "label": 3.0}).status_code == 201


def compat_json(srv: ServerProcess, ref: str) -> tuple[int, dict]:
    result = srv.cli("compat", ref, "--json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_a_compatible_candidate_passes_on_recorded_traffic(server: ServerProcess) -> None:
    result = server.cli("compat", "m@2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"replayed {RECORDED} recorded requests: 0 errors, 0 invalid outputs" in result.stdout
    assert "y: agreement with production 1" in result.stdout
    assert "verdict: pass" in result.stdout


@pytest.mark.parametrize(("version", "causes"), [
    (3, ["input_removed x", "input_added_required z"]),
    (4, ["input_added_required w"]),
    (5, ["output_removed y"]),
    (6, ["output_datatype_changed y: FP64 -> INT64"]),
], ids=["input-renamed", "extra-required-input", "output-renamed", "output-datatype"])
def test_a_breaking_signature_fails_and_names_each_cause(server: ServerProcess, version: int, causes: list[str]) -> None:
    result = server.cli("compat", f"m@{version}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verdict: fail" in result.stdout
    failed = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("✗")]
    for cause in causes:
        assert any(cause in line for line in failed), f"{cause!r} not among the named causes: {failed}"
    kinds = {c.split()[0] for c in causes}
    listed = [line for line in result.stdout.splitlines() if line.startswith("│") and "yes" in line]
    assert {kind for kind in kinds if any(kind in line for line in listed)} == kinds


def test_a_new_optional_input_is_not_breaking(server: ServerProcess) -> None:
    code, out = compat_json(server, "m@9")
    assert code == 0
    assert out["verdict"] == "pass" and out["causes"] == []
    assert [(c["kind"], c["tensor"], c["breaking"]) for c in out["changes"]] == [("input_added_optional", "w", False)]
    assert out["replay"]["requests"] == RECORDED and out["replay"]["errors"] == 0


def test_a_candidate_that_raises_on_recorded_inputs_reports_replay_errors(server: ServerProcess) -> None:
    code, out = compat_json(server, "m@7")
    assert code == 1
    assert out["verdict"] == "fail"
    assert out["changes"] == []  # the signature is fine: only the replay shows the problem
    assert out["replay"]["requests"] == RECORDED
    assert out["replay"]["errors"] == RECORDED
    assert out["replay"]["error_kinds"] == {"ValueError": RECORDED}
    assert "cannot read this row" in out["replay"]["error_examples"][0]["error"]
    assert f"{RECORDED} of {RECORDED} recorded requests failed in the candidate" in out["causes"]


def test_a_candidate_answering_nan_reports_invalid_outputs(server: ServerProcess) -> None:
    result = server.cli("compat", "m@8")
    assert result.returncode == 1
    assert f"replayed {RECORDED} recorded requests: 0 errors, {RECORDED} invalid outputs" in result.stdout
    assert "invalid outputs (NaN, infinity, wrong shape)" in result.stdout


def test_each_check_is_in_the_audit_log(server: ServerProcess) -> None:
    with server.client() as api:
        analyses = [e for e in api.get("/api/events", params={"model": "m", "limit": 500}).json() if e["kind"] == "analysis"]
    messages = " | ".join(e["message"] for e in analyses)
    assert "compat of v2 against v1: pass" in messages
    assert "compat of v3 against v1: fail" in messages
    failed = next(e for e in analyses if "compat of v7" in e["message"])
    assert failed["evidence"]["verdict"] == "fail" and failed["evidence"]["replay"]["errors"] == RECORDED

