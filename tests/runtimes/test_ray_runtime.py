"""A version served by a real Ray Serve application, behind a real changeover gateway."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import skops.io as sio

from changeover.client import Client
from modelfiles import breast_cancer, skops_classifiers, v2_request
from serverproc import TOKEN, running_server

pytest.importorskip("ray.serve", reason="the ray extra is not installed")

pytestmark = pytest.mark.ray


def ray_folder(root: Path, artifact: Path, extra: str = "") -> Path:
    folder = root / "ray-model"
    folder.mkdir(parents=True)
    (folder / "model.skops").write_bytes(artifact.read_bytes())
    (folder / "model.yaml").write_text("runtime: ray\nartifact: model.skops\n" + extra)
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


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray that this test and the server share: the server joins it through
    CHANGEOVER_RAY_ADDRESS, the test reads Ray Serve's status from it. Two CPUs, so that
    reservations show in what is left."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def running_replicas() -> list[int]:
    """RUNNING replicas of each running changeover application, through Ray Serve's status API."""
    from ray import serve

    apps = serve.status().applications
    return sorted(d.replica_states.get("RUNNING", 0) for name, app in apps.items()
                  if name.startswith("changeover-") and app.status == "RUNNING" for d in app.deployments.values())


def wait_until(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)
    return value


@pytest.mark.timeout(900)  # a Ray cluster, and three Ray Serve deployments, on a shared 2-core machine
def test_each_version_runs_its_own_replicas_and_resources_and_rolls_out_as_any(tmp_path: Path,
                                                                               ray_address: str) -> None:
    import ray

    v1, _ = skops_classifiers(tmp_path / "models")
    one = ray_folder(tmp_path / "one", v1)  # one replica, no CPU reserved (the defaults)
    two = ray_folder(tmp_path / "two", v1, "ray: {num_replicas: 2, num_cpus: 0.5}\n")
    x, _ = breast_cancer()
    env = {"RAY_USAGE_STATS_ENABLED": "0", "CHANGEOVER_RAY_ADDRESS": ray_address}
    with running_server(tmp_path / "home", env=env) as server, Client(server.url, TOKEN, timeout=600) as client:
        assert client.push(one, "onray").version == 1
        assert client.push(two, "onray").version == 2
        client.set_alias("onray", "champion", 1)
        wait_until(lambda: running_replicas() == [1], "v1's one replica")

        def served(n: int = 30) -> set[str]:
            answers = [client.http.post("/v2/models/onray/infer", json=v2_request(x[:2])) for _ in range(n)]
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
            return {a.headers["x-changeover-version"] for a in answers}

        client.apply({"model": "onray", "candidate": "2", "canary": {"steps": [50], "bake": "10m"}, "watch": "10m"})
        wait_until(lambda: served() == {"1", "2"}, "the canary to take half the traffic")
        assert running_replicas() == [1, 2]  # v1 one replica, v2 its two
        # v2's two replicas reserve half a CPU each; v1's none
        wait_until(lambda: ray.available_resources().get("CPU") == 1.0, "v2's CPUs to show as reserved")

        client.promote("onray")
        wait_until(lambda: client.model("onray").aliases.get("champion") == 2, "the promotion")
        wait_until(lambda: served() == {"2"}, "every request on v2")
        assert running_replicas() == [1, 2]  # while it watches, the old champion stays warm
