"""`changeover rollout report` end to end: a real `changeover serve`, one short rollout through
gate → shadow → 20% → 50% → promote → watch under labelled traffic (report_road.py), then the
report in the terminal and as a page, and that page in a real headless Chromium (Debian's,
driven by Playwright, as the dashboard's test): the charts are drawn, nothing is fetched, no
console error, and a screenshot (printed; copied to out/rollout-report.png)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_road import walk_the_road

from changeover.cli.rollout_road import looks
from serverproc import ServerProcess

OUT = Path(__file__).resolve().parents[2] / "out"
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium") if Path(p).exists()), None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
CHARTS = ("chart-traffic", "chart-errors", "chart-latency", "chart-online", "chart-judge-error_rate",
          "chart-judge-label_accuracy")


def need_browser() -> Any:
    """Playwright's sync API, or a skip (a failure under CI) naming what is missing (as the
    dashboard's browser test does)."""
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


@pytest.fixture(scope="module")
def road(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, Any], Path]]:
    """A server that has walked the whole road once (about 30 s), the rollout as the API tells
    it, and the page `rollout report m --html` wrote."""
    root = tmp_path_factory.mktemp("report")
    server = ServerProcess(root / "home", env={"COLUMNS": "160"}).start(timeout=120)  # slow starts on a busy machine
    try:
        walk_the_road(server, root)
        with server.client() as api:
            rollout = api.get("/api/rollouts", params={"model": "m", "limit": 1}).json()[0]
        page = root / "report.html"
        result = server.cli("rollout", "report", "m", "--html", str(page))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"report: {page}" in result.stdout
        yield server, rollout, page
    finally:
        server.stop()


def test_the_page_names_every_step_and_decision_and_fetches_nothing(road: tuple[ServerProcess, dict[str, Any], Path]) -> None:
    _, rollout, page = road
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""\b(src|href|action)\s*=\s*["']?\s*(https?:)?//""", text), "the page links out"
    assert not re.search(r"<(script|link|img|iframe)\b", text)
    for step in ("step 1 of 2 (20%)", "step 2 of 2 (50%)", "offline gate", "shadow", "promotion", "watch"):
        assert step in text, step
    kinds = re.findall(r'<tr class="event" data-kind="([^"]+)"', text)
    assert kinds == [e["kind"] for e in sorted(rollout["events"], key=lambda e: (e["at"], e["id"]))]
    for decision in ("compat.passed", "gate.passed", "shadow.passed", "step.passed", "promote.done", "watch.passed"):
        assert decision in kinds, decision
    for e in rollout["events"]:
        if "." in e["kind"]:
            assert e["message"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in text
    for chart in CHARTS:
        assert f'<figure class="chart" id="{chart}">' in text, chart


def test_the_terminal_summary_and_choosing_a_rollout(road: tuple[ServerProcess, dict[str, Any], Path]) -> None:
    server, rollout, _ = road
    result = server.cli("rollout", "report", "m", "--id", str(rollout["id"]))
    assert result.returncode == 0, result.stderr
    assert f"m rollout {rollout['id']}: v2 against v1 — promoted" in result.stdout
    for stage in ("compatibility", "offline gate", "step 1 of 2 (20%)", "step 2 of 2 (50%)", "promotion", "watch"):
        assert re.search(rf"{re.escape(stage)}\s+│\s+passed", result.stdout), stage
    assert "report:" not in result.stdout  # no page without --html

    missing = server.cli("rollout", "report", "m", "--id", "999")
    assert missing.returncode == 2 and "no rollout 999" in missing.stderr
    nobody = server.cli("rollout", "report", "nobody")
    assert nobody.returncode == 1 and "nobody has no rollout" in nobody.stderr


@pytest.mark.browser
def test_the_page_in_a_real_browser(road: tuple[ServerProcess, dict[str, Any], Path], tmp_path: Path) -> None:
    sync_playwright = need_browser()
    _, rollout, page_file = road
    judged = [c for look in looks(rollout) for c in look.checks
              if c["name"] == "error_rate" and (c["estimate"] is not None or c["low"] is not None)]
    assert len(judged) >= 2  # one verdict per canary step at least (the watch's, when its baseline answered)
    problems: list[str] = []
    requests: list[str] = []
    shot = tmp_path / "rollout-report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_selector("#decisions tr.event", timeout=10_000)
            for chart in CHARTS:
                box = page.locator(f"#{chart} svg").bounding_box()
                assert box is not None and box["width"] > 500 and box["height"] > 100, (chart, box)
                assert page.locator(f"#{chart} svg path").count() > 10, chart
            # the judge's intervals and the tolerance are drawn, the stages are all passed
            assert page.locator("[id^='chart-judge-error_rate-interval-']").count() == len(judged)
            assert page.locator("[id^='chart-judge-error_rate-tolerance-']").count() == len(judged)
            assert page.locator("ol.road li.passed").count() == 7
            page.click("#decisions tr.event[data-kind='step.passed'] summary >> nth=0")
            assert "harm beyond tolerance excluded" in page.inner_text("#decisions details[open] pre")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert requests == [page_file.as_uri()], requests  # the page itself, and nothing else
    assert shot.stat().st_size > 50_000
    OUT.mkdir(exist_ok=True)
    shutil.copy(shot, OUT / "rollout-report.png")
    print(f"screenshot: {shot} (and {OUT / 'rollout-report.png'})")
