"""The monitors' Prometheus gauges beside the gateway's, and the Grafana dashboard that reads them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
from monhelpers import add_feedback, add_request, add_window, push
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from changeover.domain.policy import TrafficPolicy
from changeover.gateway.metrics import GatewayMetrics
from changeover.monitoring.drift_monitor import set_reference_profile
from changeover.monitoring.prom import register_monitoring_metrics
from changeover.store import tables as t
from changeover.store.store import Store

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "changeover-dashboard.json"


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_update_replaces_a_family() -> None:
    registry = CollectorRegistry()
    metrics = register_monitoring_metrics(registry)
    report = {"drift_share": 0.5, "columns": [
        {"name": "x[0]", "test": "ks", "statistic": 0.3, "drifted": True},
        {"name": "x[1]", "test": "no_data", "statistic": None, "drifted": False},
    ]}
    metrics.update(drift={("m", 1): report}, rollouts={"m": {"phase": "progressing", "step_index": 1, "weight": 25.0,
                                                             "candidate": 2}},
                   generations={"m": 7}, alerts=[{"rule": "r", "model": "m", "severity": "page", "state": "firing"}])
    got = samples(registry)
    assert got[("changeover_drift_score", (("column", "x[0]"), ("model", "m"), ("test", "ks"), ("version", "1")))] == 0.3
    assert got[("changeover_drift_share", (("model", "m"), ("version", "1")))] == 0.5
    assert got[("changeover_rollout_phase", (("model", "m"), ("phase", "progressing")))] == 1
    assert got[("changeover_rollout_phase", (("model", "m"), ("phase", "shadowing")))] == 0
    assert got[("changeover_rollout_weight", (("model", "m"), ("version", "2")))] == 25
    assert got[("changeover_policy_generation_stored", (("model", "m"),))] == 7
    assert got[("changeover_alert_firing", (("model", "m"), ("rule", "r"), ("severity", "page")))] == 1
    assert not any(name == "changeover_drift_score" and ("column", "x[1]") in labels for name, labels in got)
    metrics.update(drift={("m", 2): {"drift_share": 0.0, "columns": []}})  # version 1 no longer served
    got = samples(registry)
    assert ("changeover_drift_share", (("model", "m"), ("version", "1"))) not in got
    assert not any(name == "changeover_drift_score" for name, _ in got)


def test_refresh_from_the_store_beside_the_gateway_metrics(store: Store) -> None:
    gateway = GatewayMetrics()
    metrics = register_monitoring_metrics(gateway.registry)  # one registry, no name clash
    push(store, "m", 1)
    push(store, "m", 2)
    store.set_alias("m", "champion", 1, actor="t")
    with store.tx() as conn:
        store.write_policy(TrafficPolicy("m", champion=1, weights={2: 10.0}), conn=conn, event_kind="policy",
                           message="canary", actor="t")
        conn.execute(insert(t.rollouts).values(model="m", spec={"candidate": "2"}, status={
            "phase": "progressing", "step_index": 0, "weight": 10.0}, active=True, created_at=0.0, updated_at=0.0))
    rng = np.random.default_rng(0)
    set_reference_profile(store, "m", 1, {"x": rng.normal(size=(300, 2))})
    now = time.time()
    for _ in range(20):
        rid = add_request(store, "m", 1, now - 5, output={"label": 1}, x=rng.normal(size=(3, 2)).tolist())
        add_feedback(store, rid, "m", now - 1, now - 5, label=1)
    add_window(store, "m", 2, now - 10, now - 1, requests=10, predictions=[0.5])
    metrics.refresh(store, now)
    got = samples(gateway.registry)
    assert got[("changeover_policy_generation_stored", (("model", "m"),))] == 1
    assert got[("changeover_drift_share", (("model", "m"), ("version", "1")))] == 0.0
    assert got[("changeover_online_metric", (("metric", "accuracy"), ("model", "m"), ("version", "1")))] == 1.0
    assert got[("changeover_online_labelled", (("model", "m"), ("version", "1")))] == 20
    assert got[("changeover_rollout_weight", (("model", "m"), ("version", "2")))] == 10
    assert got[("changeover_monitoring_refreshed", ())] == now


def test_a_scrape_starts_a_refresh(store: Store) -> None:
    registry = CollectorRegistry()
    metrics = register_monitoring_metrics(registry)
    push(store, "m", 1)
    metrics.refresh_on_scrape(store, min_interval_s=60)
    generate_latest(registry)
    deadline = time.monotonic() + 10
    while samples(registry).get(("changeover_monitoring_refreshed", ()), 0) == 0:
        assert time.monotonic() < deadline, "no refresh after a scrape"
        time.sleep(0.05)


def test_the_grafana_dashboard_reads_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    registry = CollectorRegistry()
    GatewayMetrics(registry)
    register_monitoring_metrics(registry)
    known = set()
    for family in registry.collect():
        known.add(family.name)
        known.update(s.name for s in family.samples)
        if family.type == "counter":
            known.add(family.name + "_total")
        if family.type == "histogram":
            known.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"changeover_[a-z_]+", expr)}
    assert used and used <= known, used - known
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 30
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
