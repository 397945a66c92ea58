"""Real Open Inference Protocol clients, unchanged, against a real changeover server."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as tritonhttp  # noqa: E402 - a real v2 client, from the test dependencies

from modelfiles import breast_cancer, skops_classifiers
from serverproc import running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("clients")
    v1, _ = skops_classifiers(root / "models")
    with running_server(root / "home") as srv:
        srv.cli("models", "push", str(v1), "--name", "cancer", check=True)
        srv.cli("alias", "set", "cancer", "champion", "1", check=True)
        yield srv


def test_tritons_http_client_reads_health_metadata_and_infers(server) -> None:
    client = tritonhttp.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("cancer")
        meta = client.get_model_metadata("cancer")
        assert meta["inputs"][0]["name"] == "input" and meta["inputs"][0]["shape"] == [-1, 30]

        x, _ = breast_cancer()
        tensor = tritonhttp.InferInput("input", [4, 30], "FP64")
        tensor.set_data_from_numpy(x[:4])
        result = client.infer("cancer", [tensor], outputs=[tritonhttp.InferRequestedOutput("label"),
                                                            tritonhttp.InferRequestedOutput("probabilities")])
        labels = result.as_numpy("label")
        proba = result.as_numpy("probabilities")
        assert labels.shape == (4,) and proba.shape == (4, 2)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        assert result.get_response()["model_version"] == "1"

        pinned = client.infer("cancer", [tensor], model_version="1")
        np.testing.assert_array_equal(pinned.as_numpy("label"), labels)

        # FP32 data for the FP64 input: a safe widening, cast and served
        narrower = tritonhttp.InferInput("input", [4, 30], "FP32")
        narrower.set_data_from_numpy(x[:4].astype(np.float32))
        assert client.infer("cancer", [narrower]).as_numpy("label").shape == (4,)

        wrong = tritonhttp.InferInput("input", [4, 30], "INT64")
        wrong.set_data_from_numpy(x[:4].astype(np.int64))
        with pytest.raises(Exception, match="datatype"):
            client.infer("cancer", [wrong])
    finally:
        client.close()
