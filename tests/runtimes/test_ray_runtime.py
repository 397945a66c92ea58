"""A version served by a real Ray Serve application, behind a real changeover gateway."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio

from modelfiles import breast_cancer, skops_classifiers, v2_request
from serverproc import running_server

pytest.importorskip("ray.serve", reason="the ray extra is not installed")

pytestmark = pytest.mark.ray


def ray_folder(root: Path, artifact: Path) -> Path:
    folder = root / "ray-model"
    folder.mkdir()
    (folder / "model.skops").write_bytes(artifact.read_bytes())
    (folder / "model.yaml").write_text("runtime: ray\nartifact: model.skops\n")
    return folder


def test_a_version_on_ray_serve_answers_through_the_gateway(tmp_path: Path) -> None:
    v1, _ = skops_classifiers(tmp_path / "models")
    folder = ray_folder(tmp_path, v1)
    x, _ = breast_cancer()
    expected = sio.load(v1, trusted=sio.get_untrusted_types(file=v1) or None).predict(x[:5])
    with running_server(tmp_path / "home", env={"RAY_USAGE_STATS_ENABLED": "0"}) as server:
        pushed = server.cli("models", "push", str(folder), "--name", "onray", "--json", check=True)
        assert '"runtime": "ray"' in pushed.stdout
        server.cli("alias", "set", "onray", "champion", "1", check=True)
        answer = None
        for _ in range(600):
            answer = httpx.post(f"{server.url}/v2/models/onray/infer", json=v2_request(x[:5]), timeout=60)
            if answer.status_code == 200:
                break
            import time

            time.sleep(0.1)
        assert answer is not None and answer.status_code == 200, answer.text if answer else None
        assert answer.headers["x-changeover-version"] == "1"
        labels = next(o for o in answer.json()["outputs"] if o["name"] == "label")["data"]
        np.testing.assert_array_equal(labels, expected)
