"""The dashboard end to end in a real headless Chromium (Debian's, driven by Playwright): the
page asks for the token, shows the model, its traffic split and its rollout, follows the
rollout as it moves, and leaves a screenshot."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from monhelpers import TOKEN, LiveServer, add_feedback, add_request, add_window, build_app, push
from sqlalchemy import insert, update

from changeover.domain.policy import TrafficPolicy
from changeover.monitoring.alerts import parse_rules
from changeover.monitoring.drift_monitor import set_reference_profile
from changeover.monitoring.engine import AlertEngine
from changeover.monitoring.figures import StoreFigures
from changeover.store import tables as t
from changeover.store.store import Store

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium") if Path(p).exists()), None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
OUT = Path(__file__).resolve().parents[2] / "out"
SPEC = {"model": "m", "candidate": "2", "gate": {"task": "classification"}, "shadow": {"sample": 1.0},
        "canary": {"steps": [5, 25, 50], "bake": "10m"}, "promote": "auto", "watch": "1h"}


# stage states, one letter each (done, current, failed, todo) over gate shadow 5% 25% 50% promote watch
STAGE_CASES = [
    ({"phase": "pending", "step_index": -1}, [], "ttttttt"),
    ({"phase": "gating", "step_index": -1}, [], "ctttttt"),
    ({"phase": "shadowing", "step_index": -1}, [{"kind": "gate"}], "dcttttt"),
    ({"phase": "paused", "paused_from": "shadowing", "step_index": -1}, [], "dcttttt"),
    ({"phase": "progressing", "step_index": 2}, [], "ddddctt"),
    ({"phase": "promoting", "step_index": 2}, [], "dddddct"),
    ({"phase": "watching", "step_index": 2}, [], "ddddddc"),
    ({"phase": "promoted", "step_index": 2}, [], "ddddddd"),
    ({"phase": "rolled_back", "step_index": -1}, [{"kind": "gate"}, {"kind": "shadow"}], "dfttttt"),
    ({"phase": "rolled_back", "step_index": 1}, [{"kind": "canary"}], "dddfttt"),
    ({"phase": "rolled_back", "step_index": 2}, [{"kind": "watch"}], "ddddddf"),
]


def need_browser() -> Any:
    """Playwright's sync API, or a skip (a failure under CI) naming what is missing."""
    missing = None
    if CHROMIUM is None:
        missing = "Debian chromium is not installed (/usr/bin/chromium): apt-get install chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "the playwright package is not installed"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test needs chromium under CI: {missing}")
        pytest.skip(missing)
    return sync_playwright


def canary(store: Store, weight: float, step_index: int) -> None:
    with store.tx() as conn:
        store.write_policy(TrafficPolicy("m", champion=1, weights={2: weight}), conn=conn, event_kind="step.started",
                           message=f"canary step {step_index + 1}: v2 gets {weight:g}%", actor="controller")
        conn.execute(update(t.rollouts).values(status={"phase": "progressing", "step_index": step_index,
                                                       "weight": weight, "message": f"baking at {weight:g}%"}))


@pytest.fixture
def live(store: Store, tmp_path: Path) -> Iterator[LiveServer]:
    push(store, "m", 1)
    push(store, "m", 2)
    store.set_alias("m", "champion", 1, actor="test")
    store.set_alias("m", "candidate", 2, actor="test")
    rng = np.random.default_rng(0)
    set_reference_profile(store, "m", 1, {"x": rng.normal(size=(500, 2))}, rng.random(500))
    now = time.time()
    for i in range(30):
        rid = add_request(store, "m", 1, now - 280 + i * 9, output={"label": 1}, x=rng.normal(size=(3, 2)).tolist())
        add_feedback(store, rid, "m", now - 270 + i * 9, now - 280 + i * 9, label=int(rng.random() < 0.9))
        add_window(store, "m", 1, now - 290 + i * 9, now - 281 + i * 9, requests=40 + i, errors=i % 7 == 0,
                   latencies=list(rng.gamma(2, 3, 20)), predictions=list(rng.random(20)))
        if i > 20:
            add_window(store, "m", 2, now - 290 + i * 9, now - 281 + i * 9, requests=3, latencies=[6.0, 9.0])
    with store.tx() as conn:
        key = conn.execute(insert(t.rollouts).values(
            model="m", spec=SPEC, status={"phase": "pending", "step_index": -1, "weight": 0.0}, active=True,
            created_at=now - 300, updated_at=now)).inserted_primary_key
        assert key is not None
        rollout = key[0]
        for kind, at in (("gate", now - 250), ("shadow", now - 120)):
            conn.execute(insert(t.analyses).values(rollout_id=rollout, model="m", version=2, kind=kind, outcome="pass",
                                                   evidence={"agreement": 0.97, "requests": 5000}, at=at))
        conn.execute(insert(t.shadow_pairs), [
            {"model": "m", "shadow_version": 2, "champion_version": 1, "request_id": f"s{i}", "at": now - 200 + i * 3,
             "champion_output": {"label": 1}, "shadow_output": {"label": int(rng.random() < 0.95)}}
            for i in range(40)])
    canary(store, 5.0, 0)
    rules = parse_rules([{"name": "m-p99", "metric": "latency_p99_ms", "condition": ">", "threshold": 1,
                          "window": "10m", "severity": "page", "rollback": True}])
    engine = AlertEngine(store, rules, StoreFigures(store))
    engine.evaluate()
    with LiveServer(build_app(store, tmp_path, engine=engine)) as server:
        yield server


def test_the_dashboard_in_a_real_browser(live: LiveServer, store: Store, tmp_path: Path) -> None:
    sync_playwright = need_browser()
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(live.url + "/")
            # it asks for the token, and says so when the token is wrong
            page.wait_for_selector("#token-dialog:not([hidden])", timeout=10_000)
            page.fill("#token-input", "not-the-token")
            page.click("#token-submit")
            page.wait_for_selector("#token-error:not([hidden])", timeout=10_000)
            assert "refused" in page.inner_text("#token-error")
            problems.clear()  # the browser logs the refused (403) fetch itself
            page.fill("#token-input", TOKEN)
            page.click("#token-submit")
            page.wait_for_selector("#models button[data-model='m']", timeout=10_000)
            assert page.is_hidden("#token-dialog")
            # the live traffic split and the rollout at its first canary step
            page.wait_for_selector(".split-weight[data-version='2']", timeout=10_000)
            assert page.inner_text(".split-weight[data-version='1']") == "95%"
            assert page.inner_text(".split-weight[data-version='2']") == "5%"
            page.wait_for_selector("#rollout-steps .step.current[data-stage='5%']", timeout=10_000)
            assert page.get_attribute("#rollout-steps [data-stage='gate']", "class") == "step done"
            assert "pass" in page.inner_text("#rollout-timeline")
            assert "champion" in page.inner_text("#versions")
            # the charts are drawn and the audit log is listed
            page.wait_for_selector("#chart-requests polyline", timeout=10_000)
            page.wait_for_selector("#chart-latency polyline", timeout=10_000)
            page.wait_for_selector("#drift table", timeout=10_000)
            page.wait_for_selector("#chart-agreement polyline", timeout=10_000)
            page.wait_for_selector("#chart-online polyline", timeout=10_000)
            assert "firing" in page.inner_text("#alerts") and "accuracy" in page.inner_text("#online")
            assert "step.started" in page.inner_text("#events")
            # the rollout moves: the page follows on its own
            canary(store, 25.0, 1)
            page.wait_for_selector("#rollout-steps .step.current[data-stage='25%']", timeout=10_000)
            page.wait_for_function(
                "document.querySelector(\".split-weight[data-version='2']\").textContent === '25%'", timeout=10_000)
            assert page.inner_text("#rollout-weight") == "25%"
            assert page.get_attribute("#rollout-steps [data-stage='5%']", "class") == "step done"
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            # the road of steps for every phase (the page's own function, table-driven)
            for status, analyses, expected in STAGE_CASES:
                got = page.evaluate("([status, analyses]) => stages({spec: SPEC, status, analyses})"
                                    .replace("SPEC", json.dumps(SPEC)), [status, analyses])
                assert "".join(s["state"][0] for s in got) == expected, (status, got)
            # the token is kept: a reload goes straight to the data
            page.reload()
            page.wait_for_selector("#models button[data-model='m']", timeout=10_000)
            assert page.is_hidden("#token-dialog")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    OUT.mkdir(exist_ok=True)
    shutil.copy(shot, OUT / "dashboard.png")
    assert problems == []
