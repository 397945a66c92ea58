"""The Open Inference Protocol over gRPC (``changeover serve --grpc-port``): Triton's own gRPC
client, unchanged, against a real server; the answers, routing, stickiness, errors, metrics
and request log are REST's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tritongrpc
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from changeover.protos import grpc_predict_v2_pb2 as pb
from changeover.protos import grpc_predict_v2_pb2_grpc as pb_grpc
from modelfiles import breast_cancer, python_model, skops_classifiers
from serverproc import TOKEN, ServerProcess, running_server

X, _ = breast_cancer()
MIXED_INPUTS = "[{name: x, datatype: FP64, shape: [-1, 2]}, {name: n, datatype: INT64, shape: [-1]}, " \
               "{name: s, datatype: BYTES, shape: [-1]}]"
MIXED_OUTPUTS = "[{name: y, datatype: FP64, shape: [-1]}, {name: shout, datatype: BYTES, shape: [-1]}]"
MIXED = "return {'y': inputs['x'].sum(axis=1) * inputs['n'], " \
        "'shout': np.asarray([str(v).upper() for v in inputs['s']], dtype=object)}"
CANARY_SPEC = """model: m
candidate: "2"
canary:
  sticky_key: header:x-changeover-key
  steps: [50, 60]
  bake: 10m
  overrides: [{header: x-tester, value: "yes", version: candidate}]
watch: 2s
"""


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("grpc")
    v1, _ = skops_classifiers(root / "models")
    mixed = python_model(root / "mixed", MIXED, inputs=MIXED_INPUTS, outputs=MIXED_OUTPUTS)
    constant = [python_model(root / f"m{v}", f"return {{'y': np.full(len(inputs['x']), {v}.0)}}") for v in (1, 2)]
    with running_server(root / "home", grpc_port=0) as srv:
        srv.cli("models", "push", str(v1), "--name", "cancer", check=True)
        srv.cli("alias", "set", "cancer", "champion", "1", check=True)
        srv.cli("models", "push", str(mixed), "--name", "mixed", "--trust", check=True)
        srv.cli("alias", "set", "mixed", "champion", "1", check=True)
        for folder in constant:
            srv.cli("models", "push", str(folder), "--name", "m", "--trust", check=True)
        srv.cli("alias", "set", "m", "champion", "1", check=True)
        yield srv


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[tritongrpc.InferenceServerClient]:
    triton = tritongrpc.InferenceServerClient(url=server.grpc_target)
    try:
        yield triton
    finally:
        triton.close()


def cancer_input(x: np.ndarray, datatype: str = "FP64") -> tritongrpc.InferInput:
    tensor = tritongrpc.InferInput("input", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


def metrics(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def requests_total(values: dict, model: str, version: str, code: str) -> float:
    return values.get(("changeover_requests_total",
                       (("code", code), ("model", model), ("version", version))), 0.0)


def test_tritons_grpc_client_reads_health_and_metadata(server: ServerProcess, client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("cancer")
    assert client.is_model_ready("cancer", "1")
    assert client.get_server_metadata().name == "changeover"
    meta = client.get_model_metadata("cancer", as_json=True)
    rest = httpx.get(f"{server.url}/v2/models/cancer").json()
    assert meta["name"] == "cancer" and meta["versions"] == ["1"] and meta["platform"] == rest["platform"]
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]] == \
        [(t["name"], t["datatype"], t["shape"]) for t in rest["inputs"]] == [("input", "FP64", [-1, 30])]
    assert [t["name"] for t in meta["outputs"]] == [t["name"] for t in rest["outputs"]]


def test_infer_answers_as_rest_and_the_model_itself(server: ServerProcess, client, tmp_path: Path) -> None:
    import skops.io as sio

    x = X[:5]
    result = client.infer("cancer", [cancer_input(x)], request_id="grpc-answer-1")
    labels, proba = result.as_numpy("label"), result.as_numpy("probabilities")
    response = result.get_response()
    assert response.model_name == "cancer" and response.model_version == "1" and response.id == "grpc-answer-1"

    rest = httpx.post(f"{server.url}/v2/models/cancer/infer", json={
        "inputs": [{"name": "input", "shape": [5, 30], "datatype": "FP64", "data": x.reshape(-1).tolist()}]}).json()
    by_name = {o["name"]: o for o in rest["outputs"]}
    np.testing.assert_array_equal(labels, np.asarray(by_name["label"]["data"]).reshape(by_name["label"]["shape"]))
    np.testing.assert_allclose(proba, np.asarray(by_name["probabilities"]["data"]).reshape(5, 2), rtol=0, atol=1e-12)

    path, _ = skops_classifiers(tmp_path)  # the same fit, deterministic
    model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    np.testing.assert_array_equal(labels, model.predict(x))
    np.testing.assert_allclose(proba, model.predict_proba(x), rtol=0, atol=1e-12)

    # outputs asked for, a pinned version, FP32 widened to the FP64 input
    only = client.infer("cancer", [cancer_input(x)], outputs=[tritongrpc.InferRequestedOutput("label")])
    assert [o.name for o in only.get_response().outputs] == ["label"]
    np.testing.assert_array_equal(client.infer("cancer", [cancer_input(x)], model_version="1").as_numpy("label"),
                                  labels)
    narrower = client.infer("cancer", [cancer_input(x.astype(np.float32), "FP32")])
    assert narrower.as_numpy("label").shape == (5,)


def test_int64_and_bytes_inputs_and_a_bytes_output(server: ServerProcess, client) -> None:
    x = np.array([[1.0, 2.0], [0.5, -1.5], [3.0, 0.25]])
    n = np.array([2, 3, -1], dtype=np.int64)
    s = np.array(["a", "bé", "c d"], dtype=object)
    tensors = [tritongrpc.InferInput("x", [3, 2], "FP64"), tritongrpc.InferInput("n", [3], "INT64"),
               tritongrpc.InferInput("s", [3], "BYTES")]
    for tensor, value in zip(tensors, (x, n, s), strict=True):
        tensor.set_data_from_numpy(value)
    result = client.infer("mixed", tensors)
    np.testing.assert_array_equal(result.as_numpy("y"), x.sum(axis=1) * n)
    assert [v.decode() for v in result.as_numpy("shout")] == ["A", "BÉ", "C D"]

    rest = httpx.post(f"{server.url}/v2/models/mixed/infer", json={"inputs": [
        {"name": "x", "shape": [3, 2], "datatype": "FP64", "data": x.reshape(-1).tolist()},
        {"name": "n", "shape": [3], "datatype": "INT64", "data": n.tolist()},
        {"name": "s", "shape": [3], "datatype": "BYTES", "data": s.tolist()}]}).json()
    by_name = {o["name"]: o["data"] for o in rest["outputs"]}
    assert by_name["y"] == result.as_numpy("y").tolist() and by_name["shout"] == ["A", "BÉ", "C D"]


def test_typed_contents_are_taken_too_and_trailing_metadata_name_the_request(server: ServerProcess) -> None:
    """Not every client sends raw contents: the protocol's typed ``contents`` fields work,
    and the trailing metadata carry the request id and the version, as REST's headers do."""
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="cancer")
        tensor = request.inputs.add(name="input", datatype="FP64", shape=[2, 30])
        tensor.contents.fp64_contents.extend(X[:2].reshape(-1).tolist())
        response, call = stub.ModelInfer.with_call(request, metadata=(("x-request-id", "typed-1"),))
        trailing = dict(call.trailing_metadata())
        assert trailing["x-request-id"] == "typed-1" and trailing["x-changeover-version"] == "1"
        assert response.id == "typed-1" and [o.name for o in response.outputs] == ["label", "probabilities"]
        labels = np.frombuffer(response.raw_output_contents[0], dtype="<i8")
        assert labels.shape == (2,)

        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(pb.ModelInferRequest(model_name="cancer", inputs=[tensor], raw_input_contents=[b"", b""]))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "raw_input_contents" in caught.value.details()
        assert dict(caught.value.trailing_metadata())["x-request-id"]


def test_unknown_models_are_not_found(client) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("nope", [cancer_input(X[:1])])
    assert caught.value.status() == "StatusCode.NOT_FOUND" and "nope" in caught.value.message()
    for call in (lambda: client.get_model_metadata("nope"), lambda: client.is_model_ready("nope"),
                 lambda: client.infer("cancer", [cancer_input(X[:1])], model_version="7")):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() in ("StatusCode.NOT_FOUND", "StatusCode.UNAVAILABLE"), caught.value


def test_a_wrong_shape_or_name_is_invalid_argument_naming_the_input(client) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("cancer", [cancer_input(X[:2, :29])])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and "'input'" in caught.value.message()
    wrong = tritongrpc.InferInput("inputs", [2, 30], "FP64")
    wrong.set_data_from_numpy(X[:2])
    with pytest.raises(InferenceServerException) as caught:
        client.infer("cancer", [wrong])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and "input" in caught.value.message()


def test_grpc_requests_are_counted_and_logged_like_rest(server: ServerProcess, client) -> None:
    before = metrics(server)
    for i in range(3):
        client.infer("cancer", [cancer_input(X[:2])], request_id=f"grpc-logged-{i}")
    with pytest.raises(InferenceServerException):
        client.infer("cancer", [cancer_input(X[:2, :29])])
    after = metrics(server)
    assert requests_total(after, "cancer", "1", "200") - requests_total(before, "cancer", "1", "200") == 3
    assert requests_total(after, "cancer", "1", "422") - requests_total(before, "cancer", "1", "422") == 1
    # in the request log: feedback joins it by the request id
    joined = httpx.post(f"{server.url}/v1/feedback", json={"request_id": "grpc-logged-0", "label": 1})
    assert joined.status_code == 201, joined.text


def test_routing_overrides_and_stickiness_read_grpc_metadata(server: ServerProcess, client, tmp_path: Path) -> None:
    spec = tmp_path / "canary.yaml"
    spec.write_text(CANARY_SPEC)
    server.cli("apply", str(spec), "--no-follow", check=True)
    x = np.array([[1.0, 2.0]])

    def version_of(headers: dict[str, str]) -> str:
        tensor = tritongrpc.InferInput("x", [1, 2], "FP64")
        tensor.set_data_from_numpy(x)
        result = client.infer("m", [tensor], headers=headers)
        assert float(result.as_numpy("y")[0]) == float(result.get_response().model_version)
        return str(result.get_response().model_version)

    wait_until(lambda: version_of({"x-tester": "yes"}) == "2", "the canary's override to be adopted")
    assert {version_of({"x-tester": "yes"}) for _ in range(10)} == {"2"}
    # a sticky key gets one version, the one REST gives it; the keys split between the two
    seen = {}
    for i in range(24):
        key = f"user-{i}"
        versions = {version_of({"x-changeover-key": key}) for _ in range(3)}
        assert len(versions) == 1, key
        rest = httpx.post(f"{server.url}/v2/models/m/infer", headers={"x-changeover-key": key}, json={
            "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]})
        assert rest.headers["x-changeover-version"] == versions.pop()
        seen[key] = rest.headers["x-changeover-version"]
    assert set(seen.values()) == {"1", "2"}


def test_inference_needs_the_token_when_required(tmp_path: Path) -> None:
    v1, _ = skops_classifiers(tmp_path / "models")
    with running_server(tmp_path / "home", grpc_port=0,
                        env={"CHANGEOVER_REQUIRE_TOKEN_FOR_INFERENCE": "true"}) as srv:
        srv.cli("models", "push", str(v1), "--name", "cancer", check=True)
        srv.cli("alias", "set", "cancer", "champion", "1", check=True)
        triton = tritongrpc.InferenceServerClient(url=srv.grpc_target)
        try:
            with pytest.raises(InferenceServerException) as caught:
                triton.infer("cancer", [cancer_input(X[:1])])
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
            with pytest.raises(InferenceServerException) as caught:
                triton.infer("cancer", [cancer_input(X[:1])], headers={"authorization": "Bearer wrong"})
            assert caught.value.status() == "StatusCode.PERMISSION_DENIED"
            answer = triton.infer("cancer", [cancer_input(X[:1])], headers={"authorization": f"Bearer {TOKEN}"})
            assert answer.as_numpy("label").shape == (1,)
        finally:
            triton.close()
