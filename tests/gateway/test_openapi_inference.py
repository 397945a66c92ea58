"""The data plane in /openapi.json, against a real `changeover serve`: every inference path and
method is described with its request schema, and schemathesis, generating requests from that
very document (valid and invalid ones), finds no 5xx but a model's own declared failure."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfiles import python_model
from serverproc import running_server

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402

MODELS = ["sum", "boom", "words"]  # "boom" fails (a declared 500 with an error_id) on negative inputs

EXPECTED = {  # path -> methods, and whether a request body is described
    "/": {"get": False},
    "/v2": {"get": False},
    "/v2/health/live": {"get": False},
    "/v2/health/ready": {"get": False},
    "/v2/models/{model}": {"get": False},
    "/v2/models/{model}/ready": {"get": False},
    "/v2/models/{model}/versions/{version}": {"get": False},
    "/v2/models/{model}/versions/{version}/ready": {"get": False},
    "/v2/models/{model}/infer": {"post": True},
    "/v2/models/{model}/versions/{version}/infer": {"post": True},
    "/v1/models/{model}:predict": {"post": True},
    "/v1/models/{model}": {"get": False},
    "/v1/feedback": {"post": True},
    "/metrics": {"get": False},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    root = tmp_path_factory.mktemp("openapi")
    folders = {
        "sum": python_model(root / "sum", "return {'y': inputs['x'].sum(axis=1)}"),
        "boom": python_model(root / "boom", "if (inputs['x'] < 0).any():\n    raise ValueError('negative input')\n"
                             "return {'y': inputs['x'].sum(axis=1)}"),
        "words": python_model(root / "words", "return {'y': np.array([str(w).upper() for w in inputs['x']], dtype=object)}",
                              inputs="[{name: x, datatype: BYTES, shape: [-1]}]",
                              outputs="[{name: y, datatype: BYTES, shape: [-1]}]"),
    }
    with running_server(root / "home", env={"CHANGEOVER_MAX_BODY_BYTES": str(64 * 1024)}) as srv:
        for name, folder in folders.items():
            srv.cli("models", "push", str(folder), "--name", name, "--trust", check=True)
            srv.cli("alias", "set", name, "champion", "1", check=True)
        with srv.client() as admin:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # until the controller published every champion
                if set(MODELS) <= set(admin.get("/api/status").json()["gateway"]["generations"]):
                    break
                time.sleep(0.1)
        yield srv


def test_openapi_lists_every_inference_path_with_its_schemas(server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    paths = spec["paths"]
    assert "/api/models" in paths  # the management API is still there
    for path, methods in EXPECTED.items():
        assert path in paths, path
        for method, has_body in methods.items():
            operation = paths[path][method]
            assert "inference" in operation["tags"]
            assert ("requestBody" in operation) == has_body, (path, method)
            params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert params == {n for n in ("model", "version") if "{" + n + "}" in path}, path
    schemas = spec["components"]["schemas"]
    infer = paths["/v2/models/{model}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InferenceRequest"}
    assert "application/octet-stream" in infer["requestBody"]["content"]
    assert {"200", "400", "404", "413", "422", "500", "503"} <= set(infer["responses"])
    assert infer["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferenceResponse")
    assert infer["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    request = schemas["InferenceRequest"]
    assert request["required"] == ["inputs"] and set(request["properties"]) == {"id", "parameters", "inputs", "outputs"}
    tensor = schemas["RequestInput"]
    assert set(tensor["required"]) == {"name", "shape", "datatype", "data"}
    assert tensor["properties"]["datatype"]["enum"] == ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                                                        "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
    assert set(schemas["RequestOutput"]["properties"]) == {"name", "parameters"}
    assert set(schemas["ErrorBody"]["properties"]) == {"error", "field", "expected", "got", "error_id"}
    assert set(schemas["ServerMetadata"]["required"]) == {"name", "version", "extensions"}
    predict = paths["/v1/models/{model}:predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictRequest")
    assert schemas["PredictRequest"]["required"] == ["instances"]
    feedback = paths["/v1/feedback"]["post"]
    assert {"200", "201", "400", "404", "422"} <= set(feedback["responses"])
    assert schemas["FeedbackRequest"]["required"] == ["request_id"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_openapi_inference_routes_answer_like_the_gateway_when_reached_through_fastapi(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The FastAPI routes that describe the data plane are its own handlers: reached without the
    dispatcher in front (the management app alone), they answer as the gateway does."""
    from fastapi.testclient import TestClient

    from changeover.server import Server
    from changeover.settings import Settings

    monkeypatch.setenv("CHANGEOVER_HOME", str(tmp_path))
    monkeypatch.setenv("CHANGEOVER_TOKEN", "test-token-0123456789")
    app = Server(Settings()).management_app()
    with TestClient(app) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2").json()["name"] == "changeover"
        missing = client.post("/v2/models/nope/infer", json={"inputs": [
            {"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]})
        assert missing.status_code == 404 and "error" in missing.json()
        assert client.post("/v2/models/nope/infer", content=b"{").status_code == 400
        assert client.post("/v1/models/nope:predict", json={"instances": [[1.0]]}).status_code == 404


FUZZED = [  # (path, method): the inference endpoints the fuzzer drives
    ("/v2/models/{model}/infer", "POST"),
    ("/v2/models/{model}/versions/{version}/infer", "POST"),
    ("/v1/models/{model}:predict", "POST"),
    ("/v1/feedback", "POST"),
    ("/v2/models/{model}", "GET"),
    ("/v2/models/{model}/ready", "GET"),
    ("/v2/models/{model}/versions/{version}", "GET"),
    ("/v2/models/{model}/versions/{version}/ready", "GET"),
    ("/v1/models/{model}", "GET"),
]
CASES_PER_ENDPOINT = 40  # ≥ 200 in all; each endpoint's run bounded in time below
SECONDS_PER_ENDPOINT = 20.0


def _strategy(operation, path: str) -> st.SearchStrategy:
    """Cases of both generation modes, with the model (and version) sometimes a real one, so the
    bodies reach the decoding and the models, not only the 404."""
    options = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        options.append(operation.as_strategy(generation_mode=mode))
        if "{model}" in path:
            for model in MODELS:
                fixed = {"model": model, **({"version": "1"} if "{version}" in path else {})}
                options.append(operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    return st.one_of(options)


def _fuzz(operation, path: str, method: str, url: str, statuses: Counter[int], bad: list[str]) -> int:
    """Run one endpoint's cases (at most CASES_PER_ENDPOINT, SECONDS_PER_ENDPOINT); how many ran."""
    started = time.monotonic()
    seen = 0

    @settings(max_examples=CASES_PER_ENDPOINT, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=_strategy(operation, path))
    def fuzz(case) -> None:
        nonlocal seen
        if time.monotonic() - started > SECONDS_PER_ENDPOINT:
            return
        seen += 1
        response = case.call(base_url=url, timeout=10)
        statuses[response.status_code] += 1
        if response.status_code < 500:
            return
        try:
            answer = response.json()
        except ValueError:
            answer = None
        answer = answer if isinstance(answer, dict) else {}
        declared = (response.status_code == 500 and (case.path_parameters or {}).get("model") == "boom"
                    and "error_id" in answer)
        loading = response.status_code == 503 and "retry-after" in {k.lower() for k in response.headers}
        # readiness: 503 is the protocol's "not ready" (KServe's too), declared with its body
        not_ready = response.status_code == 503 and answer.get("ready") is False
        if not (declared or loading or not_ready):
            bad.append(f"{method} {case.formatted_path} {response.status_code}: {response.text[:300]}\n"
                       f"  body={case.body!r:.500} headers={case.headers!r:.200}")

    fuzz()
    return seen


def test_fuzzing_the_inference_endpoints_finds_no_server_error(server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    statuses: Counter[int] = Counter()
    bad: list[str] = []
    total = sum(_fuzz(schema[path][method], path, method, server.url, statuses, bad) for path, method in FUZZED)
    print(f"{total} cases: {dict(statuses)}")
    assert not bad, "\n".join(bad[:10])
    assert total >= 200, (total, statuses)
    assert any(400 <= s < 500 for s in statuses) and 200 in statuses, statuses


def test_a_version_of_non_ascii_digits_is_a_404_not_a_500(server) -> None:
    """Found by the fuzzer: "³".isdigit() is true, int("³") raises (it was a 500)."""
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for version in ("³", "١"):  # a superscript three; an Arabic-Indic one
            for answer in (http.get(f"/v2/models/sum/versions/{version}"),
                           http.get(f"/v2/models/sum/versions/{version}/ready"),
                           http.post(f"/v2/models/sum/versions/{version}/infer", json=body)):
                assert answer.status_code == 404, (answer.request.url, answer.text)
                assert "not found" in answer.json()["error"]
        assert http.post("/v2/models/sum/versions/1/infer", json=body).json()["outputs"][0]["data"] == [3.0]
        # the same in the binary extension's header length (latin-1 b"\xb3" is "³")
        answer = http.post("/v2/models/sum/infer", content=b'{"inputs": []}',
                           headers={"inference-header-content-length": b"\xb3"})
        assert answer.status_code == 400 and answer.json()["field"] == "inference-header-content-length"
