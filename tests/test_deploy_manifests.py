"""deploy/: the Kubernetes manifests docs/deploy.md describes, checked by a real kubectl and
against the project's own settings.

`kubectl apply --dry-run=client` does not validate on its own: it asks an API server which
kinds exist (discovery) to map each document to its resource, and whether the object exists.
With no cluster here, it asks `KubeAPI` below: a stand-in that lists the resources of a cluster
with the Prometheus Operator and KubeRay installed, and holds no objects. kubectl still parses
every document, maps its apiVersion and kind (an unknown one fails), checks names and
namespaces, and builds what it would create; `--validate=false`, since the schemas are the
real server's (the fields are checked here instead, against the objects' shapes we rely on).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from changeover.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted(DEPLOY.glob("*.yaml")) + sorted((DEPLOY / "optional").glob("*.yaml"))

# what a cluster serves: group/version -> (resource, kind, namespaced)
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [("namespaces", "Namespace", False), ("secrets", "Secret", True), ("configmaps", "ConfigMap", True),
           ("services", "Service", True), ("persistentvolumeclaims", "PersistentVolumeClaim", True),
           ("serviceaccounts", "ServiceAccount", True), ("pods", "Pod", True)],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True)],
    "batch/v1": [("jobs", "Job", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor", True)],
    "ray.io/v1": [("rayclusters", "RayCluster", True)],
}

# CHANGEOVER_ variables that are read outside Settings (each must still be read somewhere in src/)
READ_DIRECTLY = {"CHANGEOVER_RAY_ADDRESS"}


class KubeAPI(BaseHTTPRequestHandler):
    """Discovery of `RESOURCES` (the legacy, unaggregated form every kubectl reads), and 404 for
    every object: a cluster where nothing of changeover exists yet."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0].rstrip("/")
        groups = sorted({gv.split("/")[0] for gv in RESOURCES if "/" in gv})
        if path == "/version":
            self.answer({"major": "1", "minor": "30", "gitVersion": "v1.30.0"})
        elif path == "/api":
            self.answer({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        elif path == "/apis":
            self.answer({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}
                                         for gv in RESOURCES if gv.startswith(g + "/")],
                 "preferredVersion": next({"groupVersion": gv, "version": gv.split("/")[1]}
                                          for gv in RESOURCES if gv.startswith(g + "/"))} for g in groups]})
        elif (gv := path.removeprefix("/api/").removeprefix("/apis/")) in RESOURCES:
            self.answer({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                for name, kind, namespaced in RESOURCES[gv]]})
        else:
            self.answer({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                         "message": f"{path} not found", "code": 404}, 404)

    def answer(self, body: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kubeconfig naming the stand-in API server (so kubectl never reaches a real cluster,
    nor its default localhost:8080, where a changeover may well be listening)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), KubeAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = tmp_path_factory.mktemp("kube") / "config"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "namespace": "default"}}],
        "users": [{"name": "nobody", "user": {}}],
    }))
    try:
        yield config
    finally:
        server.shutdown()
        server.server_close()


def kubectl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed (make system-deps installs Debian's kubernetes-client)")
    return subprocess.run([binary, "--kubeconfig", str(config), "--cache-dir", str(config.parent / "cache"), *args],
                          capture_output=True, text=True, timeout=120)


def documents() -> list[dict[str, Any]]:
    return [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubectl_apply_dry_run_accepts_every_manifest(kubeconfig: Path) -> None:
    expected = {f"{d['kind'].lower()}/{d['metadata']['name']}" for d in documents()}
    for folder in (DEPLOY, DEPLOY / "optional"):
        result = kubectl(kubeconfig, "apply", "--dry-run=client", "--validate=false", "-f", str(folder))
        assert result.returncode == 0, result.stderr
        created = set(re.findall(r"^(\S+/\S+) created \(dry run\)$", result.stdout, re.M))
        assert created and all(line.endswith("created (dry run)") for line in result.stdout.splitlines()), result.stdout
        expected -= {c.split("/", 1)[0].split(".")[0] + "/" + c.split("/", 1)[1] for c in created}
    assert expected == set()  # every document of every file was applied


def test_kubectl_refuses_a_kind_the_cluster_does_not_serve(kubeconfig: Path, tmp_path: Path) -> None:
    """The dry run is a check that can fail: a wrong apiVersion is an error, not a pass."""
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text((DEPLOY / "40-deployment.yaml").read_text().replace("apiVersion: apps/v1", "apiVersion: apps/v1beta1"))
    result = kubectl(kubeconfig, "apply", "--dry-run=client", "--validate=false", "-f", str(wrong))
    assert result.returncode != 0
    assert "apps/v1beta1" in result.stderr


def env_names(doc: dict[str, Any]) -> set[str]:
    """The CHANGEOVER_ variables a manifest sets: a ConfigMap's keys, containers' env names."""
    names = set(doc.get("data") or {}) if doc["kind"] == "ConfigMap" else set()
    for spec in pod_specs(doc):
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            names |= {e["name"] for e in container.get("env", [])}
    return {n for n in names if n.startswith("CHANGEOVER_")}


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] in ("Deployment", "Job", "StatefulSet"):
        return [doc["spec"]["template"]["spec"]]
    if doc["kind"] == "RayCluster":
        return [doc["spec"]["headGroupSpec"]["template"]["spec"]] + [
            g["template"]["spec"] for g in doc["spec"].get("workerGroupSpecs", [])]
    return []


def test_every_variable_the_manifests_set_is_a_setting() -> None:
    settings = {f"CHANGEOVER_{name.upper()}" for name in Settings.model_fields}
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "changeover").rglob("*.py"))
    assert all(f'"{name}"' in source for name in READ_DIRECTLY)
    used = set().union(*(env_names(d) for d in documents()))
    assert {"CHANGEOVER_STORE", "CHANGEOVER_TOKEN", "CHANGEOVER_FEEDBACK_TOKEN", "CHANGEOVER_ARTIFACTS"} <= used
    assert used - settings - READ_DIRECTLY == set()
    docs = (ROOT / "docs" / "deploy.md").read_text()
    named = set(re.findall(r"\bCHANGEOVER_[A-Z_]+[A-Z]\b", docs))
    assert named - settings - READ_DIRECTLY == set()


def by_kind(kind: str) -> dict[str, Any]:
    return next(d for d in documents() if d["kind"] == kind)


def test_the_gateway_is_probed_scraped_and_fed_its_secrets_as_the_server_expects() -> None:
    deployment, service, config = by_kind("Deployment"), by_kind("Service"), by_kind("ConfigMap")
    secret, job = by_kind("Secret"), by_kind("Job")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["args"][:2] == ["changeover", "serve"]
    port = int(container["args"][container["args"].index("--port") + 1])
    assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "http"] == [port]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert by_kind("ServiceMonitor")["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics", "interval": "15s"}
    # the Service selects the pods, and the monitor the Service
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert by_kind("ServiceMonitor")["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # secrets by reference to keys the Secret has; the home one folder per pod
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert set(refs) == {"CHANGEOVER_STORE", "CHANGEOVER_TOKEN", "CHANGEOVER_FEEDBACK_TOKEN"}
    assert all(r["name"] == secret["metadata"]["name"] and r["key"] in secret["stringData"] for r in refs.values())
    assert secret["stringData"]["store"].startswith("postgresql+psycopg://")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert config["data"]["CHANGEOVER_HOME"] in mounts
    # the migration Job runs the CLI's command on the same store
    migrate = job["spec"]["template"]["spec"]["containers"][0]
    assert migrate["command"] == ["changeover", "db", "upgrade"]
    assert {e["name"] for e in migrate["env"]} == {"CHANGEOVER_STORE"}
    assert all(d["metadata"].get("namespace") == "changeover" for d in documents() if d["kind"] != "Namespace")


def test_the_cli_has_the_commands_and_options_the_manifests_use() -> None:
    from typer.testing import CliRunner

    from changeover.cli.main import app

    runner = CliRunner()
    serve = runner.invoke(app, ["serve", "--help"])
    assert serve.exit_code == 0
    for option in ("--host", "--port", "--workers", "--log-level"):
        assert option in serve.output
    upgrade = runner.invoke(app, ["db", "upgrade", "--help"])
    assert upgrade.exit_code == 0 and "Usage: root db upgrade" in upgrade.output
    assert runner.invoke(app, ["db", "nonesuch", "--help"]).exit_code != 0  # the check above can fail
