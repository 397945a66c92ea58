"""KServe's own Python SDK (``kserve.InferenceRESTClient``), unchanged, against a real changeover
server, for both of its protocols, beside tritonclient: every answer equals the model's own.

kserve 0.21 pins pandas<3 and protobuf<7 (and downgrades python-dateutil and psutil), which the
project's environment is past, so it is not a test dependency: it runs from an environment of its
own (``CHANGEOVER_KSERVE_PYTHON``, else /tmp/kserve-venv: ``python -m venv /tmp/kserve-venv &&
/tmp/kserve-venv/bin/pip install kserve``), in a subprocess that prints what the client answered.
`make test` makes ``.venv-kserve`` in the repository for them (kserve would downgrade
pandas and protobuf in the project's own venv). Without one the tests skip; the Python of the tests is used when it imports kserve itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio
import tritonclient.http as tritonhttp

from modelfiles import breast_cancer, skops_classifiers
from serverproc import running_server


def kserve_python() -> str | None:
    repo_venv = Path(__file__).resolve().parents[2] / ".venv-kserve" / "bin" / "python"  # `make test` makes it
    candidates = [os.environ.get("CHANGEOVER_KSERVE_PYTHON"), sys.executable, str(repo_venv),
                  "/tmp/kserve-venv/bin/python"]
    for python in candidates:
        if python and Path(python).exists() and subprocess.run(
                [python, "-c", "import kserve"], capture_output=True, timeout=120).returncode == 0:
            return python
    return None


PYTHON = kserve_python()
pytestmark = pytest.mark.skipif(PYTHON is None, reason="no Python with kserve (see the module's docstring)")

DRIVER = r'''
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

url, rows = sys.argv[1], json.loads(sys.argv[2])
x = np.asarray(rows, dtype=np.float64)


async def v2():
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    try:
        out = {"live": await client.is_server_live(url), "ready": await client.is_server_ready(url),
               "model_ready": await client.is_model_ready(url, "cancer"),
               "missing_ready": await client.is_model_ready(url, "nope")}
        for binary_in in (False, True):
            tensor = InferInput("input", list(x.shape), "FP64")
            tensor.set_data_from_numpy(x, binary_data=binary_in)
            for binary_out in (False, True):
                wanted = [RequestedOutput(n, {"binary_data": True} if binary_out else None)
                          for n in ("label", "probabilities")]
                request = InferRequest("cancer", [tensor], request_id=f"k-{binary_in}-{binary_out}",
                                       request_outputs=wanted)
                headers = {}
                answer = await client.infer(url, request, model_name="cancer", response_headers=headers)
                out[f"infer_in{int(binary_in)}_out{int(binary_out)}"] = {
                    "id": answer.id, "model_name": answer.model_name,
                    "outputs": {o.name: o.as_numpy().tolist() for o in answer.outputs},
                    "shapes": {o.name: list(o.shape) for o in answer.outputs},
                    "binary": "inference-header-content-length" in {k.lower() for k in headers},
                }
        return out
    finally:
        await client.close()


async def v1():
    client = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
    try:
        return {"live": await client.is_server_live(url), "model_ready": await client.is_model_ready(url, "cancer"),
                "predict": await client.infer(url, {"instances": x.tolist()}, model_name="cancer")}
    finally:
        await client.close()


print(json.dumps({"v2": asyncio.run(v2()), "v1": asyncio.run(v1())}))
'''

X, _ = breast_cancer()
ROWS = X[:5]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, object]]:
    root = tmp_path_factory.mktemp("kserve")
    v1, _ = skops_classifiers(root / "models")
    reference = sio.load(v1, trusted=sio.get_untrusted_types(file=v1))
    with running_server(root / "home") as srv:
        srv.cli("models", "push", str(v1), "--name", "cancer", check=True)
        srv.cli("alias", "set", "cancer", "champion", "1", check=True)
        yield srv, reference


@pytest.fixture(scope="module")
def kserve_answers(served) -> dict:
    srv, _ = served
    done = subprocess.run([PYTHON, "-c", DRIVER, srv.url, json.dumps(ROWS.tolist())],  # type: ignore[list-item]
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kserve_v2_client_health_readiness_and_infer_json_and_binary(served, kserve_answers) -> None:
    _, reference = served
    v2 = kserve_answers["v2"]
    assert v2["live"] is True and v2["ready"] is True
    assert v2["model_ready"] is True and v2["missing_ready"] is False
    labels, proba = reference.predict(ROWS), reference.predict_proba(ROWS)
    for key in ("infer_in0_out0", "infer_in0_out1", "infer_in1_out0", "infer_in1_out1"):
        answer = v2[key]
        assert answer["model_name"] == "cancer" and answer["id"].startswith("k-")
        assert answer["outputs"]["label"] == labels.tolist(), key
        np.testing.assert_allclose(answer["outputs"]["probabilities"], proba, rtol=0, atol=1e-12, err_msg=key)
        assert answer["shapes"] == {"label": [5], "probabilities": [5, 2]}
        assert answer["binary"] == key.endswith("out1"), key  # binary outputs asked for come back as bytes


def test_kserve_v1_client_liveness_readiness_and_predict(served, kserve_answers) -> None:
    srv, reference = served
    v1 = kserve_answers["v1"]
    assert v1["live"] is True and v1["model_ready"] is True
    assert v1["predict"] == {"predictions": reference.predict(ROWS).tolist()}
    # the probe is GET / without text/html; a browser there still gets the dashboard
    probe = httpx.get(f"{srv.url}/", headers={"accept": "*/*"}, timeout=10)
    assert probe.json() == {"status": "alive"}
    page = httpx.get(f"{srv.url}/", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_kserve_and_tritonclient_get_the_same_answers(served, kserve_answers) -> None:
    srv, _ = served
    client = tritonhttp.InferenceServerClient(url=srv.url.removeprefix("http://"))
    try:
        tensor = tritonhttp.InferInput("input", list(ROWS.shape), "FP64")
        tensor.set_data_from_numpy(ROWS)
        result = client.infer("cancer", [tensor], outputs=[tritonhttp.InferRequestedOutput("label", binary_data=True),
                                                            tritonhttp.InferRequestedOutput("probabilities")])
        for key in ("infer_in0_out0", "infer_in1_out1"):
            ours = kserve_answers["v2"][key]["outputs"]
            assert result.as_numpy("label").tolist() == ours["label"]
            assert result.as_numpy("probabilities").tolist() == ours["probabilities"]
    finally:
        client.close()
