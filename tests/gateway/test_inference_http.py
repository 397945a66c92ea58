"""The data plane over real HTTP against a real `changeover serve` process: Open Inference
Protocol v2 (health, metadata, ready, infer, pinned infer), KServe v1, the datatypes, batches,
request ids, every error case, /metrics, and real v2 clients' requests as they go on the wire.

tritonclient is not a dependency of the project: its requests are written here byte for byte
as tritonclient builds them (tritonclient/http/_utils.py ``_get_inference_request``)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio
from prometheus_client.parser import text_string_to_metric_families

from changeover.cli.client import Client
from changeover.registry.manifest import Manifest
from changeover.runtimes import LoadRequest, get_runtime
from changeover.store.store import Store
from changeover.store.traffic import served_request
from datatype_pairs import DATATYPE_PAIRS
from modelfiles import breast_cancer, python_model, skops_classifiers
from serverproc import TOKEN, ServerProcess, retry_loading

BODY_LIMIT = 64 * 1024
X, Y = breast_cancer()

ECHO = {  # datatype -> (request data, shape, the dtype the predictor must receive)
    "FP32": ([0.5, -1.25, 3.0, 0.125], [2, 2], "float32"),
    "FP64": ([0.1, -2.5, 1e300, 7.0], [2, 2], "float64"),
    "INT32": ([1, -2, 2**31 - 1, -(2**31)], [2, 2], "int32"),
    "INT64": ([1, -2, 2**62, -(2**62)], [2, 2], "int64"),
    "BOOL": ([True, False, False, True], [4], "bool"),
    "BYTES": (["hello", "", "héllo wörld", "😀"], [4], "object"),
}


def echo_model(root: Path, datatype: str, shape: list[int]) -> Path:
    dims = "[-1, 2]" if len(shape) == 2 else "[-1]"
    return python_model(
        root / f"echo-{datatype.lower()}",
        "x = inputs['x']\nreturn {'y': x, 'dtype': np.array([str(x.dtype)] * len(x), dtype=object)}",
        inputs=f"[{{name: x, datatype: {datatype}, shape: {dims}}}]",
        outputs=f"[{{name: y, datatype: {datatype}, shape: {dims}}}, {{name: dtype, datatype: BYTES, shape: [-1]}}]",
    )


class Env:
    def __init__(self, server: ServerProcess, v1: Path, v2: Path) -> None:
        self.server = server
        self.reference = {1: sio.load(v1, trusted=sio.get_untrusted_types(file=v1)),
                          2: sio.load(v2, trusted=sio.get_untrusted_types(file=v2))}
        self.http = httpx.Client(base_url=server.url, timeout=30)  # inference needs no token

    def infer(self, model: str, body: object, *, version: int | str | None = None,
              headers: dict | None = None) -> httpx.Response:
        """POST a v2 infer request: a dict goes as JSON, bytes or an iterator of bytes as they are."""
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + "/infer"
        if isinstance(body, dict):
            return retry_loading(lambda: self.http.post(path, json=body, headers=headers))
        return self.http.post(path, content=body, headers=headers)  # type: ignore[arg-type]


def cancer_body(x: np.ndarray, name: str = "input", datatype: str = "FP64") -> dict:
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.reshape(-1).tolist()}]}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("gateway")
    v1, v2 = skops_classifiers(root / "skops")
    server = ServerProcess(root / "home", env={"CHANGEOVER_MAX_BODY_BYTES": str(BODY_LIMIT)}).start()
    client = Client(url=server.url, token=TOKEN)
    admin = server.client()
    try:
        models: dict[str, list[tuple[Path, bool]]] = {
            "cancer": [(v1, False), (v2, True)],
            "multi": [(python_model(
                root / "multi",
                "a, b, flag, word = inputs['a'], inputs['b'], inputs['flag'], inputs['word']\n"
                "return {'total': a.sum(axis=1).astype(np.float64) + b + flag,\n"
                "        'shout': np.array([str(w).upper() for w in word], dtype=object)}",
                inputs="[{name: a, datatype: FP32, shape: [-1, 2]}, {name: b, datatype: INT64, shape: [-1]},"
                       " {name: flag, datatype: BOOL, shape: [-1]}, {name: word, datatype: BYTES, shape: [-1]}]",
                outputs="[{name: total, datatype: FP64, shape: [-1]}, {name: shout, datatype: BYTES, shape: [-1]}]",
            ), True)],
            "boom": [(python_model(
                root / "boom",
                "if (inputs['x'] < 0).any():\n    raise ValueError('negative input, secret=hunter2')\n"
                "return inputs['x'].sum(axis=1)",
            ), True)],
            "nan": [(python_model(root / "nan", "return np.full(len(inputs['x']), np.nan)"), True)],
        }
        for datatype, (_, shape, _) in ECHO.items():
            models[f"echo-{datatype.lower()}"] = [(echo_model(root, datatype, shape), True)]
        # v2 narrows the input: it refuses today's FP64 requests; v2 of "widen" takes FP32 as FP64
        models["narrow"] = [(echo_model(root / "narrow1", "FP64", [2, 2]), True),
                            (echo_model(root / "narrow2", "FP32", [2, 2]), True)]
        models["widen"] = [(echo_model(root / "widen1", "FP32", [2, 2]), True),
                           (echo_model(root / "widen2", "FP64", [2, 2]), True)]
        for name, versions in models.items():
            for path, trust in versions:
                client.push(path, name=name, labels={}, runtime=None, trust=trust)
            admin.put(f"/api/models/{name}/aliases/champion", json={"version": 1}).raise_for_status()
        # a model whose NaN means "no score", said so at push
        client.push(models["nan"][0][0], name="nan-ok", labels={"allow_nonfinite": "true"}, runtime=None, trust=True)
        admin.put("/api/models/nan-ok/aliases/champion", json={"version": 1}).raise_for_status()
        proxy = root / "proxy"
        proxy.mkdir()
        (proxy / "model.yaml").write_text(f"runtime: remote\nurl: {server.url}\nremote_model: cancer\n")
        client.push(proxy, name="proxy", labels={}, runtime=None, trust=False)
        admin.put("/api/models/proxy/aliases/champion", json={"version": 1}).raise_for_status()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until the controller published every champion
            generations = admin.get("/api/status").json()["gateway"]["generations"]
            if set(models) | {"proxy"} <= set(generations):
                break
            time.sleep(0.1)
        state = Env(server, v1, v2)
        yield state
        state.http.close()
    finally:
        client.close()
        admin.close()
        server.stop()


def metrics(env: Env) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = env.http.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric(values: dict, name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


# ---- health, metadata, readiness ----------------------------------------------------------


def test_health_live_and_ready(env: Env) -> None:
    live = env.http.get("/v2/health/live")
    assert live.status_code == 200 and live.json() == {"live": True}
    ready = env.http.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_inference_needs_no_token_by_default(env: Env) -> None:
    assert "authorization" not in env.http.headers
    assert env.infer("cancer", cancer_body(X[:1])).status_code == 200
    assert env.http.get("/v2/models/cancer").status_code == 200
    assert env.http.get("/api/models").status_code == 401  # while management does


def test_model_metadata(env: Env) -> None:
    meta = env.http.get("/v2/models/cancer")
    assert meta.status_code == 200
    assert meta.json() == {
        "name": "cancer",
        "versions": ["1"],
        "platform": "changeover/skops",
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 30]}],
        "outputs": [  # roles (inferred here) are tensor parameters: the protocol's metadata has no field for them
            {"name": "label", "datatype": "INT64", "shape": [-1], "parameters": {"role": "label"}},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2], "parameters": {"role": "probabilities"}},
        ],
        "parameters": {"task": "classification"},
    }
    v2 = env.http.get("/v2/models/cancer/versions/2").json()
    assert v2["versions"] == ["2"] and v2["inputs"] == meta.json()["inputs"]
    multi = env.http.get("/v2/models/multi").json()
    assert [(t["name"], t["datatype"]) for t in multi["inputs"]] == [
        ("a", "FP32"), ("b", "INT64"), ("flag", "BOOL"), ("word", "BYTES")]
    assert multi["platform"] == "changeover/python"
    for path in ("/v2/models/nope", "/v2/models/cancer/versions/9", "/v2/models/cancer/versions/x"):
        missing = env.http.get(path)
        assert missing.status_code == 404, path
        assert "not found" in missing.json()["error"]


def test_model_ready(env: Env) -> None:
    ready = env.http.get("/v2/models/cancer/ready")
    assert ready.status_code == 200 and ready.json() == {"name": "cancer", "ready": True}
    assert env.http.get("/v2/models/cancer/versions/1/ready").json()["ready"] is True
    cold = env.http.get("/v2/models/cancer/versions/2/ready")  # pushed, never loaded
    assert cold.status_code != 200 and cold.json()["ready"] is False
    assert env.http.get("/v2/models/nope/ready").status_code == 404


# ---- infer --------------------------------------------------------------------------------


def test_infer_answers_the_champion_with_the_models_predictions(env: Env) -> None:
    x = X[100:105]
    response = env.infer("cancer", cancer_body(x))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-changeover-version"] == "1"
    body = response.json()
    assert body["model_name"] == "cancer" and body["model_version"] == "1"
    assert body["id"] == response.headers["x-request-id"]
    label, proba = body["outputs"]
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "INT64", [5])
    assert (proba["name"], proba["datatype"], proba["shape"]) == ("probabilities", "FP64", [5, 2])
    assert label["data"] == env.reference[1].predict(x).tolist()
    np.testing.assert_allclose(np.array(proba["data"]).reshape(5, 2), env.reference[1].predict_proba(x))


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_batches_along_the_first_dimension(env: Env, batch: int) -> None:
    x = X[:batch]
    response = env.infer("cancer", cancer_body(x))
    assert response.status_code == 200, response.text
    label, proba = response.json()["outputs"]
    assert label["shape"] == [batch] and proba["shape"] == [batch, 2]
    assert label["data"] == env.reference[1].predict(x).tolist()
    if batch == 7:  # row by row gives the same answers as the batch
        rows = [env.infer("cancer", cancer_body(X[i:i + 1])).json()["outputs"][0]["data"][0] for i in range(batch)]
        assert rows == label["data"]


def test_an_empty_batch_is_not_a_server_error(env: Env) -> None:
    response = env.infer("cancer", {"inputs": [{"name": "input", "shape": [0, 30], "datatype": "FP64", "data": []}]})
    assert response.status_code < 500, response.text


def test_pinned_version_infer_bypasses_routing(env: Env) -> None:
    x = X[:10]
    pinned = env.infer("cancer", cancer_body(x), version=2)
    assert pinned.status_code == 200, pinned.text
    assert pinned.headers["x-changeover-version"] == "2"
    assert pinned.json()["model_version"] == "2"
    assert pinned.json()["outputs"][0]["data"] == env.reference[2].predict(x).tolist()
    assert env.infer("cancer", cancer_body(x), version=1).headers["x-changeover-version"] == "1"
    assert env.infer("cancer", cancer_body(x)).headers["x-changeover-version"] == "1"  # the champion is unchanged


def test_kserve_v1_predict_with_instances(env: Env) -> None:
    x = X[200:204]
    response = env.http.post("/v1/models/cancer:predict", json={"instances": x.tolist()})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": env.reference[1].predict(x).tolist()}
    assert response.headers["x-changeover-version"] == "1" and response.headers["x-request-id"]
    words = env.http.post("/v1/models/echo-bytes:predict", json={"instances": ["a", "b"]})
    assert words.status_code == 200 and words.json() == {"predictions": ["a", "b"]}
    several = env.http.post("/v1/models/multi:predict", json={"instances": [[1, 2]]})
    assert several.status_code == 400 and "v2" in several.json()["error"]
    assert env.http.post("/v1/models/nope:predict", json={"instances": [[1]]}).status_code == 404
    bad = env.http.post("/v1/models/cancer:predict", json={"instances": [[1, 2, 3]]})
    assert bad.status_code == 422 and bad.json()["field"] == "input"


@pytest.mark.parametrize("datatype", list(ECHO))
def test_each_datatype_reaches_the_model_as_its_numpy_type_and_comes_back(env: Env, datatype: str) -> None:
    data, shape, dtype = ECHO[datatype]
    body = {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}
    response = env.infer(f"echo-{datatype.lower()}", body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["y"] == {"name": "y", "datatype": datatype, "shape": shape, "data": data}
    assert outputs["dtype"]["data"] == [dtype] * shape[0]
    assert outputs["dtype"]["datatype"] == "BYTES"


@pytest.mark.parametrize("datatype", list(ECHO))
def test_a_wrong_datatype_is_a_422_naming_what_was_expected(env: Env, datatype: str) -> None:
    data, shape, _ = ECHO[datatype]
    other, value = ("FP64", 1.0) if datatype != "FP64" else ("INT32", 1)  # FP32 for FP64 is a widening: taken
    body = {"inputs": [{"name": "x", "shape": shape, "datatype": other, "data": [value] * len(data)}]}
    response = env.infer(f"echo-{datatype.lower()}", body)
    assert response.status_code == 422, response.text
    err = response.json()
    assert err["field"] == "x"
    assert err["expected"] == f"datatype {datatype}" and err["got"] == f"datatype {other}"
    assert "'x'" in err["error"] and datatype in err["error"] and other in err["error"]


def test_several_inputs_of_mixed_datatypes(env: Env) -> None:
    body = {
        "inputs": [
            {"name": "a", "shape": [3, 2], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]},
            {"name": "b", "shape": [3], "datatype": "INT64", "data": [10, 20, 30]},
            {"name": "flag", "shape": [3], "datatype": "BOOL", "data": [True, False, True]},
            {"name": "word", "shape": [3], "datatype": "BYTES", "data": ["a", "bc", "dé"]},
        ]
    }
    response = env.infer("multi", body)
    assert response.status_code == 200, response.text
    out = {o["name"]: o for o in response.json()["outputs"]}
    assert out["total"]["data"] == [14.0, 27.0, 42.0]
    assert out["shout"] == {"name": "shout", "datatype": "BYTES", "shape": [3], "data": ["A", "BC", "DÉ"]}
    missing = env.infer("multi", {"inputs": body["inputs"][:3]})
    assert missing.status_code == 422 and missing.json()["field"] == "word"
    ragged = dict(body["inputs"][1], shape=[2], data=[1, 2])
    mixed = env.infer("multi", {"inputs": [body["inputs"][0], ragged, *body["inputs"][2:]]})
    assert mixed.status_code == 422 and "batch" in mixed.json()["expected"]


def test_a_non_finite_prediction_is_the_versions_error_not_a_silent_null(env: Env) -> None:
    before = metrics(env)
    body = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
    response = env.infer("nan", body)
    assert response.status_code == 500, response.text
    assert "NaN in output" in response.json()["error"] and response.json()["error_id"]
    after = metrics(env)
    assert metric(after, "changeover_errors_total", model="nan", version="1") - metric(
        before, "changeover_errors_total", model="nan", version="1") == 1
    # a version pushed with allow_nonfinite=true answers them, as null in strict JSON
    allowed = env.infer("nan-ok", body)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["outputs"][0]["data"] == [None, None]
    json.loads(allowed.text)  # strict JSON: no NaN literal


# ---- request ids --------------------------------------------------------------------------


def test_every_answer_carries_a_request_id_kept_when_the_client_sent_one(env: Env) -> None:
    ok = env.infer("cancer", cancer_body(X[:1]), headers={"x-request-id": "client-id-1"})
    assert ok.headers["x-request-id"] == "client-id-1" and ok.json()["id"] == "client-id-1"
    from_body = env.infer("cancer", cancer_body(X[:1]) | {"id": "body-id-7"})
    assert from_body.headers["x-request-id"] == "body-id-7" and from_body.json()["id"] == "body-id-7"
    generated = {env.infer("cancer", cancer_body(X[:1])).headers["x-request-id"] for _ in range(3)}
    assert len(generated) == 3 and all(len(g) >= 16 for g in generated)
    errors = [
        env.infer("cancer", b"{nope", headers={"x-request-id": "e-400", "content-type": "application/json"}),
        env.infer("cancer", cancer_body(X[:1], name="wrong"), headers={"x-request-id": "e-422"}),
        env.infer("nope", cancer_body(X[:1]), headers={"x-request-id": "e-404"}),
        env.infer("cancer", cancer_body(X[:1]), version=9, headers={"x-request-id": "e-404b"}),
        env.infer("cancer", b"x" * (BODY_LIMIT + 1), headers={"x-request-id": "e-413"}),
        env.infer("boom", {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [-1, 0]}]},
                  headers={"x-request-id": "e-500"}),
    ]
    assert [r.status_code for r in errors] == [400, 422, 404, 404, 413, 500]
    assert [r.headers.get("x-request-id") for r in errors] == ["e-400", "e-422", "e-404", "e-404b", "e-413", "e-500"]
    assert errors[-1].headers["x-changeover-version"] == "1"  # who failed
    v1 = env.http.post("/v1/models/cancer:predict", json={"instances": X[:1].tolist()}, headers={"x-request-id": "v1-id"})
    assert v1.headers["x-request-id"] == "v1-id"


# ---- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2, 3]", "JSON object"),
        (b'{"inputs": "x"}', "inputs"),
        (b'{"inputs": []}', "inputs"),
        (b'{"input": [{"name": "input"}]}', "inputs"),
        (b'{"inputs": [{"shape": [1, 30], "datatype": "FP64", "data": []}]}', "name"),
    ],
)
def test_malformed_requests_are_400(env: Env, content: bytes, needle: str) -> None:
    response = env.infer("cancer", content, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("tensor", "field", "expected", "got"),
    [
        ({"name": "wrong", "shape": [1, 30], "datatype": "FP64"}, "wrong", "one of the inputs [input]", "unknown input 'wrong'"),
        ({"name": "input", "shape": [1, 30], "datatype": "INT64", "data": [1] * 30}, "input", "datatype FP64",
         "datatype INT64"),
        ({"name": "input", "shape": [2, 29], "datatype": "FP64"}, "input", "shape [-1, 30]", "shape [2, 29]"),
        ({"name": "input", "shape": [58], "datatype": "FP64"}, "input", "shape [-1, 30]", "shape [58]"),
        ({"name": "input", "shape": [1, 30], "datatype": "FP128"}, "input", "a datatype among", "datatype 'FP128'"),
    ],
)
def test_a_mismatch_with_the_signature_is_422_naming_the_input(
    env: Env, tensor: dict, field: str, expected: str, got: str
) -> None:
    size = int(np.prod(tensor["shape"]))
    body = {"inputs": [{"data": [0.5] * size} | tensor]}
    response = env.infer("cancer", body)
    assert response.status_code == 422, response.text
    err = response.json()
    assert err["field"] == field and err["expected"].startswith(expected) and err["got"] == got
    assert field in err["error"]


def test_data_that_does_not_fill_the_shape_is_422(env: Env) -> None:
    response = env.infer("cancer", {"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP64", "data": [0.0] * 30}]})
    assert response.status_code == 422
    assert response.json()["expected"] == "60 elements for shape [2, 30]" and response.json()["got"] == "30 elements"


def test_a_body_over_the_limit_is_413(env: Env) -> None:
    big = cancer_body(np.full((BODY_LIMIT // 100, 30), 0.123456789))
    raw = json.dumps(big).encode()
    assert len(raw) > BODY_LIMIT
    declared = env.infer("cancer", raw, headers={"content-type": "application/json"})
    assert declared.status_code == 413, declared.text
    assert str(BODY_LIMIT) in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no content-length: the server counts while reading
        for i in range(0, len(raw), 8192):
            yield raw[i:i + 8192]

    streamed = env.infer("cancer", chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    under = cancer_body(X[:60])
    assert len(json.dumps(under)) < BODY_LIMIT
    assert env.infer("cancer", under).status_code == 200


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v2/models/nope/infer", "post"),
        ("/v2/models/cancer/versions/99/infer", "post"),
        ("/v2/models/cancer/versions/latest/infer", "post"),
        ("/v2/models/nope/versions/1/infer", "post"),
        ("/v1/models/nope:predict", "post"),
    ],
)
def test_unknown_models_and_versions_are_404(env: Env, path: str, method: str) -> None:
    """(A pinned version this gateway has not loaded is looked up off the request path: the
    first answer may be a 503 "loading … retry shortly", the next the 404.)"""
    response = retry_loading(lambda: env.http.request(method.upper(), path, json=cancer_body(X[:1])))
    assert response.status_code == 404, response.text
    assert "not found" in response.json()["error"]


def test_a_model_that_raises_is_a_500_with_an_error_id_counted_and_the_server_goes_on(env: Env) -> None:
    before = metrics(env)
    bad = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, -1, 2, 3]}]}
    good = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 1, 2, 3]}]}
    failures = [env.infer("boom", bad) for _ in range(3)]
    for response in failures:
        assert response.status_code == 500
        err = response.json()
        assert re.fullmatch(r"[0-9a-f]{12}", err["error_id"])
        assert "ValueError" in err["error"] and "hunter2" not in err["error"]  # no internals leak out
    assert len({r.json()["error_id"] for r in failures}) == 3
    after = metrics(env)
    assert metric(after, "changeover_errors_total", model="boom", version="1") - metric(
        before, "changeover_errors_total", model="boom", version="1") == 3
    assert metric(after, "changeover_requests_total", model="boom", version="1", code="500") - metric(
        before, "changeover_requests_total", model="boom", version="1", code="500") == 3
    # and it goes on: the same model, other models, health
    ok = env.infer("boom", good)
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [2.0, 5.0]
    assert env.infer("cancer", cancer_body(X[:2])).status_code == 200
    assert env.http.get("/v2/health/ready").status_code == 200
    log = env.server.log.read_text()
    # one traceback per kind of error per minute (with its error id), not one per failed request
    assert "prediction failed in boom v1 (error id" in log and "raise ValueError('negative input" in log
    assert sum(r.json()["error_id"] in log for r in failures) <= 1


# ---- metrics ------------------------------------------------------------------------------


def test_metrics_count_requests_errors_and_latency_per_model_and_version(env: Env) -> None:
    before = metrics(env)
    for _ in range(4):
        assert env.infer("cancer", cancer_body(X[:3])).status_code == 200
    for _ in range(2):
        assert env.infer("cancer", cancer_body(X[:3]), version=2).status_code == 200
    assert env.infer("cancer", cancer_body(X[:3], name="wrong")).status_code == 422
    assert env.infer("cancer", b"{nope", headers={"content-type": "application/json"}).status_code == 400
    after = metrics(env)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("changeover_requests_total", model="cancer", version="1", code="200") == 4
    assert delta("changeover_requests_total", model="cancer", version="2", code="200") == 2
    assert delta("changeover_latency_seconds_count", model="cancer", version="1") == 4
    assert delta("changeover_latency_seconds_count", model="cancer", version="2") == 2
    assert delta("changeover_latency_seconds_bucket", model="cancer", version="2", le="+Inf") == 2
    assert metric(after, "changeover_latency_seconds_sum", model="cancer", version="1") > 0
    buckets = [k for k in after if k[0] == "changeover_latency_seconds_bucket" and ("model", "cancer") in k[1]
               and ("version", "1") in k[1]]
    assert len(buckets) >= 10  # a real histogram
    # a request the serving version's signature refuses is that version's error...
    assert delta("changeover_errors_total", model="cancer", version="1") == 1
    assert delta("changeover_refused_total", model="cancer", version="1", code="422") == 1
    assert delta("changeover_requests_total", model="cancer", version="1", code="422") == 1
    assert delta("changeover_errors_total", model="cancer", version="2") == 0
    # ...a malformed body is the client's, before any version
    assert delta("changeover_rejected_total", model="cancer", code="422") == 0
    assert delta("changeover_rejected_total", model="cancer", code="400") == 1
    assert metric(after, "changeover_policy_generation", model="cancer") >= 1
    text = env.http.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")


# ---- what a version accepts, and what it refuses ------------------------------------------


def echo_data(datatype: str) -> list:
    return {"BOOL": [True, False, True, True], "BYTES": ["a", "b", "c", "d"]}.get(datatype, [1, 0, 1, 1])


@pytest.mark.parametrize(("sent", "declared", "accepted"),
                         [p for p in DATATYPE_PAIRS if p[1] in ECHO], ids=lambda v: str(v))
def test_the_gateway_applies_the_one_acceptance_rule(env: Env, sent: str, declared: str, accepted: bool) -> None:
    """The table `compat` is tested with (tests/domain/test_compat.py): a safe widening is
    taken and cast to the declared datatype; anything else is a 422 of the serving version."""
    _, shape, dtype = ECHO[declared]
    body = {"inputs": [{"name": "x", "shape": shape, "datatype": sent, "data": echo_data(sent)}]}
    response = env.infer(f"echo-{declared.lower()}", body)
    assert response.headers["x-changeover-version"] == "1"
    if accepted:
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        assert outputs["dtype"]["data"] == [dtype] * shape[0]  # the predictor got what it declared
        assert outputs["y"]["datatype"] == declared
    else:
        assert response.status_code == 422, response.text
        assert (response.json()["expected"], response.json()["got"]) == (f"datatype {declared}", f"datatype {sent}")


def test_a_wider_candidate_takes_todays_requests_cast(env: Env) -> None:
    """FP32 clients, an FP64 candidate: compat calls it not breaking, and it is not: served."""
    body = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [0.5, -1.25, 3.0, 0.125]}]}
    for version in (1, 2):
        response = env.infer("widen", body, version=version)
        assert response.status_code == 200, response.text
        assert response.headers["x-changeover-version"] == str(version)
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        assert outputs["y"]["data"] == [0.5, -1.25, 3.0, 0.125]
        assert outputs["dtype"]["data"] == ["float32" if version == 1 else "float64"] * 2


def version_windows(env: Env, model: str) -> dict[str, dict[str, float]]:
    """Requests and errors per version over the metric windows the gateway wrote (what the judge reads)."""
    with env.server.client() as api:
        series = api.get(f"/api/models/{model}/timeseries", params={"since": "10m"}).json()["versions"]
    return {v: {"requests": sum(x or 0 for x in s["requests"]), "errors": sum(x or 0 for x in s["errors"])}
            for v, s in series.items()}


def test_a_version_that_refuses_its_traffic_is_charged_with_the_errors(env: Env) -> None:
    """Today's FP64 requests, a candidate narrowed to FP32: each refusal (422) is the
    candidate's error in its metric windows, in the request log and in /metrics, pinned or
    routed to it by the policy; malformed bodies stay the client's."""
    todays = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [0.1, 0.2, 0.3, 0.4]}]}
    before = metrics(env)
    assert env.infer("narrow", todays).status_code == 200  # the champion takes them
    pinned = [env.infer("narrow", todays, version=2, headers={"x-request-id": f"narrow-pinned-{i}"})
              for i in range(3)]
    for response in pinned:
        assert response.status_code == 422, response.text
        assert response.headers["x-changeover-version"] == "2"  # who refused
        assert response.json()["field"] == "x" and response.json()["expected"] == "datatype FP32"
    malformed = env.infer("narrow", b"{nope", version=2, headers={"content-type": "application/json"})
    assert malformed.status_code == 400

    # routed by the policy: v2 made champion, every request goes to it
    with env.server.client() as api:
        api.put("/api/models/narrow/aliases/champion", json={"version": 2}).raise_for_status()
    deadline = time.monotonic() + 20
    while (routed := env.infer("narrow", todays)).headers.get("x-changeover-version") != "2":
        assert time.monotonic() < deadline, "the gateway did not adopt the new champion"
        time.sleep(0.1)
    routed_more = [env.infer("narrow", todays) for _ in range(3)]
    assert {r.status_code for r in [routed, *routed_more]} == {422}
    after = metrics(env)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("changeover_refused_total", model="narrow", version="2", code="422") == 7
    assert delta("changeover_errors_total", model="narrow", version="2") == 7
    assert delta("changeover_requests_total", model="narrow", version="2", code="422") == 7
    assert delta("changeover_errors_total", model="narrow", version="1") == 0
    assert delta("changeover_requests_total", model="narrow", version="1", code="200") >= 1
    assert delta("changeover_rejected_total", model="narrow", code="422") == 0
    assert delta("changeover_rejected_total", model="narrow", code="400") == 1  # the malformed body: no version

    deadline = time.monotonic() + 20  # windows are flushed every 0.5 s here
    while (windows := version_windows(env, "narrow")).get("2", {}).get("errors", 0) < 7:
        assert time.monotonic() < deadline, f"the refusals never reached v2's metric windows: {windows}"
        time.sleep(0.2)
    assert windows["2"] == {"requests": 7, "errors": 7}
    assert windows["1"]["errors"] == 0

    store = Store(f"sqlite:///{env.server.home / 'store.db'}", run_migrations=False)
    try:
        deadline = time.monotonic() + 20
        while (row := served_request(store, "narrow-pinned-0")) is None:
            assert time.monotonic() < deadline, "the refused request never reached the request log"
            time.sleep(0.2)
        assert (row["model"], row["version"], row["status"], row["recorded"]) == ("narrow", 2, 422, False)
    finally:
        store.close()


def test_unknown_model_names_do_not_grow_the_metrics(env: Env) -> None:
    for i in range(20):
        assert env.infer(f"made-up-{i}", cancer_body(X[:1])).status_code == 404
    text = env.http.get("/metrics").text
    assert "made-up-" not in text


# ---- real v2 clients ----------------------------------------------------------------------


def test_the_spec_json_request_with_id_parameters_and_outputs(env: Env) -> None:
    request = {
        "id": "42",
        "parameters": {"priority": 0},
        "inputs": [
            {"name": "a", "shape": [2, 2], "datatype": "FP32", "parameters": {"content_type": "np"},
             "data": [[1.5, 2.5], [3.0, 4.0]]},
            {"name": "b", "shape": [2], "datatype": "INT64", "data": [1, 2]},
            {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [False, True]},
            {"name": "word", "shape": [2], "datatype": "BYTES", "parameters": {"content_type": "str"}, "data": ["x", "y"]},
        ],
        "outputs": [{"name": "total"}, {"name": "shout"}],
    }
    response = env.http.post("/v2/models/multi/infer", content=json.dumps(request),
                             headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "42" and body["model_name"] == "multi" and body["model_version"] == "1"
    for output in body["outputs"]:
        assert set(output) >= {"name", "shape", "datatype", "data"}
    assert {o["name"]: o["data"] for o in body["outputs"]} == {"total": [5.0, 10.0], "shout": ["X", "Y"]}


def triton_json_request(x: np.ndarray, *, outputs: list[str] | None) -> dict:
    """What tritonclient.http sends with ``set_data_from_numpy(x, binary_data=False)``."""
    request: dict = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP64",
                                 "data": [v.item() for v in x.flatten()]}]}
    if outputs:
        request["outputs"] = [{"name": n, "parameters": {"binary_data": False}} for n in outputs]
    else:
        request["parameters"] = {"binary_data_output": True}
    return request


def json_outputs(response: httpx.Response) -> list[dict]:
    """An answer's outputs as the JSON form gives them, whether they came as JSON or, with the
    binary tensor data extension, as raw bytes after the JSON header (read as tritonclient does)."""
    if "inference-header-content-length" not in response.headers:
        return response.json()["outputs"]
    split = int(response.headers["inference-header-content-length"])
    header, raw = json.loads(response.content[:split]), response.content[split:]
    out, offset = [], 0
    for o in header["outputs"]:
        if "data" in o:
            out.append(o)
            continue
        size = o["parameters"]["binary_data_size"]
        chunk, offset = raw[offset:offset + size], offset + size
        if o["datatype"] == "BYTES":
            values, at = [], 0
            while at < len(chunk):
                n = int.from_bytes(chunk[at:at + 4], "little")
                values.append(chunk[at + 4:at + 4 + n].decode())
                at += 4 + n
        else:
            dtype = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "?"}[o["datatype"]]
            values = np.frombuffer(chunk, dtype=dtype).tolist()
        out.append({"name": o["name"], "datatype": o["datatype"], "shape": o["shape"], "data": values})
    assert offset == len(raw)
    return out


def binary_answer(response: httpx.Response) -> dict[str, np.ndarray]:
    assert "inference-header-content-length" in response.headers
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in json_outputs(response)}


def test_tritonclient_json_requests(env: Env) -> None:
    x = X[:3]
    # outputs named with binary_data false: a JSON-only answer (no Inference-Header-Content-Length)
    response = env.http.post("/v2/models/cancer/infer",
                             content=json.dumps(triton_json_request(x, outputs=["label", "probabilities"])))
    assert response.status_code == 200, response.text
    assert "inference-header-content-length" not in response.headers
    label = next(o for o in response.json()["outputs"] if o["name"] == "label")
    assert "binary_data_size" not in label.get("parameters", {})
    assert label["data"] == env.reference[1].predict(x).tolist()
    # binary_data_output asked for: the outputs come back as raw bytes after the JSON header
    response = env.http.post("/v2/models/cancer/infer", content=json.dumps(triton_json_request(x, outputs=None)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    answer = binary_answer(response)
    assert answer["label"].tolist() == env.reference[1].predict(x).tolist()
    assert np.allclose(answer["probabilities"], env.reference[1].predict_proba(x))


def triton_binary_request(tensors: dict[str, np.ndarray], *, outputs: list[str] | None = None) -> tuple[bytes, dict]:
    """What tritonclient.http sends by default (``set_data_from_numpy(x)``, binary_data=True): a JSON
    header, then each input's raw little-endian bytes (BYTES: a 4-byte length before each element)."""
    inputs, blobs = [], []
    for name, array in tensors.items():
        if array.dtype == object:
            raw = b"".join(len(v).to_bytes(4, "little") + v for v in (e if isinstance(e, bytes) else str(e).encode()
                                                                       for e in array.reshape(-1)))
            datatype = "BYTES"
        else:
            raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
            datatype = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "bool": "BOOL"}[str(array.dtype)]
        inputs.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                       "parameters": {"binary_data_size": len(raw)}})
        blobs.append(raw)
    request: dict = {"inputs": inputs}
    if outputs:
        request["outputs"] = [{"name": n, "parameters": {"binary_data": False}} for n in outputs]
    else:
        request["parameters"] = {"binary_data_output": True}
    header = json.dumps(request).encode()
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header)),
                                      "content-type": "application/octet-stream"}


def test_tritonclient_default_binary_request(env: Env) -> None:
    x = X[:3]
    content, headers = triton_binary_request({"input": x})
    response = env.http.post("/v2/models/cancer/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert binary_answer(response)["label"].tolist() == env.reference[1].predict(x).tolist()


@pytest.mark.parametrize("datatype", list(ECHO))
def test_each_datatype_arrives_the_same_in_binary(env: Env, datatype: str) -> None:
    data, shape, dtype = ECHO[datatype]
    array = np.array(data, dtype=object if datatype == "BYTES" else dtype).reshape(shape)
    content, headers = triton_binary_request({"x": array})
    echoed = env.http.post(f"/v2/models/echo-{datatype.lower()}/infer", content=content, headers=headers)
    assert echoed.status_code == 200, echoed.text
    outputs = {o["name"]: o for o in json_outputs(echoed)}
    assert outputs["y"] == {"name": "y", "datatype": datatype, "shape": shape, "data": data}
    assert outputs["dtype"]["data"] == [dtype] * shape[0]


def test_binary_and_json_requests_give_the_same_answer(env: Env) -> None:
    tensors = {
        "a": np.array([[1.5, 2.0], [3.0, -4.0]], dtype=np.float32),
        "b": np.array([7, -2**40], dtype=np.int64),
        "flag": np.array([True, False]),
        "word": np.array(["straße", "ok"], dtype=object),
    }
    content, headers = triton_binary_request(tensors)
    binary = env.http.post("/v2/models/multi/infer", content=content, headers=headers)
    assert binary.status_code == 200, binary.text
    as_json = env.infer("multi", {"inputs": [
        {"name": n, "shape": list(a.shape), "datatype": d, "data": a.reshape(-1).tolist()}
        for (n, a), d in zip(tensors.items(), ("FP32", "INT64", "BOOL", "BYTES"), strict=True)
    ]})
    assert as_json.status_code == 200, as_json.text
    assert {o["name"]: o["data"] for o in as_json.json()["outputs"]} == {
        "total": [11.5, -1.0 - 2**40], "shout": ["STRASSE", "OK"]}
    assert json_outputs(binary) == as_json.json()["outputs"]


def test_a_binary_request_whose_sizes_do_not_add_up_is_400(env: Env) -> None:
    content, headers = triton_binary_request({"input": X[:2]})
    short = env.http.post("/v2/models/cancer/infer", content=content[:-8], headers=headers)
    assert short.status_code in (400, 422), short.text
    beyond = env.http.post("/v2/models/cancer/infer", content=content,
                           headers=headers | {"Inference-Header-Content-Length": str(len(content) + 1)})
    assert beyond.status_code == 400 and "inference-header-content-length" in beyond.json()["error"].lower()
    assert env.http.get("/v2/health/ready").status_code == 200


def test_only_the_requested_outputs_are_returned(env: Env) -> None:
    request = cancer_body(X[:2]) | {"outputs": [{"name": "probabilities"}]}
    response = env.infer("cancer", request)
    assert response.status_code == 200
    assert [o["name"] for o in response.json()["outputs"]] == ["probabilities"]


def test_the_remote_runtime_is_a_v2_client_of_a_real_server(env: Env, tmp_path: Path) -> None:
    model = get_runtime("remote").load(LoadRequest(
        path=tmp_path, manifest=Manifest(extra={"url": env.server.url, "remote_model": "cancer"}),
        signature=None, trusted=False,
    ))
    try:
        assert [t.name for t in model.signature.inputs] == ["input"]  # read from the server's metadata
        out = model.predict({"input": X[:6]})
        assert out["label"].tolist() == env.reference[1].predict(X[:6]).tolist()
        np.testing.assert_allclose(out["probabilities"], env.reference[1].predict_proba(X[:6]))
    finally:
        model.close()
    # and as a registered version: `proxy` serves through HTTP what `cancer` answers
    proxied = env.infer("proxy", cancer_body(X[:4]))
    assert proxied.status_code == 200, proxied.text
    assert proxied.headers["x-changeover-version"] == "1"
    assert proxied.json()["outputs"][0]["data"] == env.reference[1].predict(X[:4]).tolist()


def test_an_unknown_model_is_404_whether_or_not_a_version_is_named(env: Env) -> None:
    for path in ("/v2/models/nope/ready", "/v2/models/nope/versions/1/ready", "/v2/models/cancer/versions/³/ready"):
        assert env.http.get(path).status_code == 404, path
    pinned = env.http.post("/v2/models/cancer/versions/%C2%B3/infer", json=cancer_body(X[:1]))
    assert pinned.status_code == 404, pinned.text


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_body_type_browsers_send_cross_origin_unasked_is_refused(env: Env, content_type: str) -> None:
    """A web page can POST text/plain to any origin without a preflight: inference and
    feedback refuse those types (415 naming content-type), so no page can use a user's browser."""
    body = json.dumps(cancer_body(X[:1]))
    r = env.http.post("/v2/models/cancer/infer", content=body, headers={"content-type": content_type})
    assert r.status_code == 415 and r.json()["field"] == "content-type", r.text
    fb = env.http.post("/v1/feedback", content=json.dumps({"request_id": "x", "label": 1}),
                       headers={"content-type": content_type})
    assert fb.status_code == 415, fb.text
    ok = env.http.post("/v2/models/cancer/infer", content=body, headers={"content-type": "application/json"})
    assert ok.status_code == 200
