"""The monitoring endpoints over real HTTP: a uvicorn server on a loopback port serving the
management API, the monitoring router and the dashboard over a real SQLite store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from monhelpers import TOKEN, LiveServer, add_feedback, add_request, add_window, build_app, push

from changeover.monitoring.alerts import parse_rules
from changeover.monitoring.engine import AlertEngine
from changeover.monitoring.figures import StoreFigures
from changeover.store.store import Store


@pytest.fixture
def filled(store: Store) -> Store:
    """Model m: v1 champion with a reference profile, v2 a canary; traffic, feedback, windows."""
    push(store, "m", 1)
    push(store, "m", 2)
    store.set_alias("m", "champion", 1, actor="test")
    rng = np.random.default_rng(0)
    now = time.time()
    for i in range(40):
        x = rng.normal(size=(4, 2))
        rid = add_request(store, "m", 1 + (i % 4 == 0), now - 100 + i, output={"label": int(i % 3 == 0)}, x=x.tolist())
        add_feedback(store, rid, "m", now - 50 + i, now - 100 + i, label=1 if i % 3 == 0 or i % 5 == 0 else 0)
    add_window(store, "m", 1, now - 100, now - 50, requests=300, errors=3, latencies=[2.0, 4.0, 8.0],
               predictions=list(rng.random(100)))
    add_window(store, "m", 2, now - 100, now - 50, requests=100, errors=5, latencies=[3.0, 30.0])
    return store


@pytest.fixture
def server(filled: Store, tmp_path: Path) -> Iterator[LiveServer]:
    engine = AlertEngine(filled, parse_rules([{"name": "m-errors", "metric": "error_rate", "condition": ">",
                                               "threshold": 0.001, "window": "10m", "version": "2"}]),
                         StoreFigures(filled))
    engine.evaluate()
    with LiveServer(build_app(filled, tmp_path, engine=engine)) as live:
        yield live


def client(live: LiveServer, token: str | None = TOKEN) -> httpx.Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=live.url, headers=headers, timeout=30)


def test_the_token_is_required(server: LiveServer) -> None:
    paths = ["/api/models/m/timeseries", "/api/models/m/drift", "/api/models/m/drift/history",
             "/api/models/m/online", "/api/alerts"]
    with client(server, None) as anonymous, client(server, "wrong") as wrong:
        for path in paths:
            assert anonymous.get(path).status_code == 401, path
            assert wrong.get(path).status_code == 403, path
        assert anonymous.put("/api/models/m/versions/1/profile", json={"data": {"x": [1]}}).status_code == 401


def test_timeseries(server: LiveServer) -> None:
    with client(server) as c:
        body = c.get("/api/models/m/timeseries", params={"since": "5m", "step": "30s"}).json()
    assert body["step"] == 30 and len(body["buckets"]) == 10
    one, two = body["versions"]["1"], body["versions"]["2"]
    assert sum(one["requests"]) == 300 and sum(one["errors"]) == 3 and sum(two["errors"]) == 5
    assert max(v for v in two["latency_p99_ms"] if v is not None) == 30.0
    assert body["online_metric"] == "accuracy" and any(v is not None for v in one["online"])


def test_drift_per_input_and_prediction(server: LiveServer, filled: Store) -> None:
    with client(server) as c:
        missing = c.get("/api/models/m/drift").json()
        assert missing["available"] is False and "no reference profile" in missing["reason"]
        rng = np.random.default_rng(1)
        put = c.put("/api/models/m/versions/champion/profile", json={
            "data": {"x": rng.normal(size=(500, 2)).tolist()}, "predictions": rng.random(500).tolist()})
        assert put.status_code == 200, put.text
        assert put.json() == {"model": "m", "version": 1, "columns": ["x[0]", "x[1]"], "rows": 500, "prediction": True}
        body = c.get("/api/models/m/drift", params={"window": "10m"}).json()
        assert body["available"] and body["version"] == 1 and body["n_requests"] == 30
        assert [col["name"] for col in body["columns"]] == ["x[0]", "x[1]", "prediction"]
        assert not body["drifted_any"] and body["drift_share"] == 0.0
        assert c.get("/api/models/m/drift", params={"version": "2"}).json()["available"] is False
        assert c.get("/api/models/m/drift", params={"window": "soon"}).status_code == 422
        assert c.get("/api/models/m/drift", params={"version": "9"}).status_code == 404
        history = c.get("/api/models/m/drift/history", params={"since": "10m"}).json()
        assert history["available"] and len(history["buckets"]) == len(history["drift_share"])


def test_online_metrics(server: LiveServer) -> None:
    with client(server) as c:
        body = c.get("/api/models/m/online", params={"window": "1h"}).json()
        assert body["versions"]["1"]["task"] == "classification" and body["versions"]["1"]["labelled"] == 30
        assert 0 <= body["versions"]["1"]["metrics"]["accuracy"] <= 1
        delayed = c.get("/api/models/m/online", params={"window": "1h", "label_delay": "70s"}).json()
        assert delayed["versions"]["1"]["labelled"] < 30
        assert c.get("/api/models/nope/online").status_code == 404


def test_alerts_state(server: LiveServer) -> None:
    with client(server) as c:
        body = c.get("/api/alerts").json()
    assert body["enabled"] and body["rules"][0]["name"] == "m-errors"
    (instance,) = body["instances"]
    assert instance["state"] == "firing" and instance["version"] == 2 and instance["value"] == 0.05


def test_unknown_model_is_404(server: LiveServer) -> None:
    with client(server) as c:
        assert c.get("/api/models/nope/timeseries").status_code == 404
        assert c.get("/api/models/nope/drift").status_code == 404


def test_dashboard_is_served_without_a_token(server: LiveServer) -> None:
    with client(server, None) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "token-form" in page.text and "https://" not in page.text  # nothing from the internet
        assert "default-src 'self'" in page.headers["content-security-policy"]
        script = c.get("/dashboard/dashboard.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert "http://" not in script.text and "https://" not in script.text
        assert c.get("/dashboard/dashboard.css").status_code == 200
        assert c.get("/dashboard/..%2Fdashboard.py").status_code == 404
        assert c.get("/dashboard/nothing.js").status_code == 404


def test_metrics_are_refreshed_on_scrape(server: LiveServer) -> None:
    deadline = time.monotonic() + 10
    with client(server, None) as c:
        while "changeover_online_metric{" not in (text := c.get("/metrics").text):
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
    assert 'changeover_alert_firing{model="m",rule="m-errors",severity="warning"} 1.0' in text
