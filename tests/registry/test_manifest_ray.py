"""``model.yaml``'s ``ray:`` section: checked at push (a bad value refused naming its field),
and what it turns into for Ray Serve. No Ray is started here: the check comes before any load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from changeover.client import ChangeoverApiError, Client
from changeover.errors import ArtifactError
from changeover.registry.manifest import read_manifest
from changeover.runtimes.ray_runtime import deployment_options
from modelfiles import skops_classifiers
from serverproc import TOKEN, running_server


def manifest(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.yaml").write_text(text)
    return folder


@pytest.mark.parametrize(("section", "expected"), [
    ("", {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}}),
    ("ray: {num_replicas: 2}", {"num_replicas": 2, "ray_actor_options": {"num_cpus": 0}}),
    ("ray: {num_replicas: 3, num_cpus: 0.5, num_gpus: 1, memory: 1073741824, max_ongoing_requests: 8}",
     {"num_replicas": 3, "max_ongoing_requests": 8,
      "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 1, "memory": 1073741824}}),
])
def test_the_ray_section_becomes_the_deployment_options(tmp_path: Path, section: str,
                                                        expected: dict[str, object]) -> None:
    folder = manifest(tmp_path / "m", f"runtime: ray\nartifact: model.skops\n{section}\n")
    assert deployment_options(read_manifest(folder).extra.get("ray") or {}) == expected


@pytest.mark.parametrize(("section", "message"), [
    ("ray: {num_replicas: 0}", "ray.num_replicas: expected an integer ≥ 1, got 0"),
    ("ray: {num_replicas: 1.5}", "ray.num_replicas: expected an integer ≥ 1, got 1.5"),
    ("ray: {num_replicas: true}", "ray.num_replicas: expected an integer ≥ 1, got True"),
    ("ray: {num_cpus: -1}", "ray.num_cpus: expected a number ≥ 0, got -1"),
    ("ray: {num_gpus: .nan}", "ray.num_gpus: expected a number ≥ 0, got nan"),
    ("ray: {num_gpus: one}", "ray.num_gpus: expected a number ≥ 0, got 'one'"),
    ("ray: {memory: 1.5}", "ray.memory: expected an integer ≥ 0 (bytes), got 1.5"),
    ("ray: {max_ongoing_requests: 0}", "ray.max_ongoing_requests: expected an integer ≥ 1, got 0"),
    ("ray: {replicas: 2}", "ray: unknown keys ['replicas']"),
    ("ray: 2", "ray: expected a mapping"),
])
def test_a_bad_ray_value_is_refused_naming_its_field(tmp_path: Path, section: str, message: str) -> None:
    folder = manifest(tmp_path / "m", f"runtime: ray\nartifact: model.skops\n{section}\n")
    with pytest.raises(ArtifactError, match=re.escape(message)):
        read_manifest(folder)


def test_a_ray_section_on_another_runtime_is_refused(tmp_path: Path) -> None:
    folder = manifest(tmp_path / "m", "runtime: skops\nartifact: model.skops\nray: {num_replicas: 2}\n")
    with pytest.raises(ArtifactError, match="ray: only for runtime: ray"):
        read_manifest(folder)


def test_a_push_with_a_bad_ray_value_gets_a_4xx_naming_the_field(tmp_path: Path) -> None:
    v1, _ = skops_classifiers(tmp_path / "models")
    folder = manifest(tmp_path / "ray-model", "runtime: ray\nartifact: model.skops\nray: {num_replicas: 0}\n")
    (folder / "model.skops").write_bytes(v1.read_bytes())
    with running_server(tmp_path / "home") as server:
        result = server.cli("models", "push", str(folder), "--name", "onray")
        assert result.returncode == 2, result.stdout + result.stderr
        with Client(server.url, TOKEN, timeout=60) as client:
            with pytest.raises(ChangeoverApiError) as refused:
                client.push(folder, "onray")
            assert 400 <= refused.value.status < 500
            assert "ray.num_replicas: expected an integer ≥ 1, got 0" in refused.value.message
            assert client.models() == []
            events = [e for e in client.events() if e.kind == "refused"]
        assert events and all("ray.num_replicas" in e.message for e in events)
