"""The dashboard's Online panel for a ranker, in a real headless Chromium: NDCG@10 and CTR@10
from ranking feedback (not "no labels yet"), and the same figures per segment."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from monhelpers import TOKEN, LiveServer, add_feedback, add_request, build_app, push
from sqlalchemy import update
from test_dashboard_browser import ARGS, CHROMIUM, need_browser

from changeover.store import tables as t
from changeover.store.store import Store

pytestmark = pytest.mark.browser


def test_the_online_panel_of_a_ranker(store: Store, tmp_path: Path) -> None:
    sync_playwright = need_browser()
    push(store, "recs", 1)
    store.set_alias("recs", "champion", 1, actor="test")
    now = time.time()
    served = list(range(1, 11))
    # eu clicks the first item, us the fourth: NDCG@10 1 and 1/log2(5) = 0.431, one click each
    for i, (segment, clicked) in enumerate([("eu", 1), ("eu", 1), ("us", 4)]):
        rid = add_request(store, "recs", 1, now - 120 + i, output={"items": served, "ranking": served})
        with store.tx() as conn:
            conn.execute(update(t.requests).where(t.requests.c.request_id == rid).values(segment=segment))
        add_feedback(store, rid, "recs", now - 60, now - 120 + i, label=[clicked])
    problems: list[str] = []
    with LiveServer(build_app(store, tmp_path)) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(server.url + "/")
            page.wait_for_selector("#token-dialog:not([hidden])", timeout=10_000)
            page.fill("#token-input", TOKEN)
            page.click("#token-submit")
            page.wait_for_selector("#online .online-ranking[data-version='1']", timeout=15_000)
            head = " ".join(page.inner_text("#online .online-ranking[data-version='1']").split())
            assert head.startswith("NDCG@10 0.81 [") and "CTR@10 1" in head, head  # (1 + 1 + 0.431) / 3
            assert "no labels yet" not in page.inner_text("#online")
            assert "ranking" in page.inner_text("#online") and "3 / 3" in page.inner_text("#online")
            page.click("#online details[data-key='online-1'] summary")
            table = page.inner_text("#online .online-segments[data-version='1']")
            rows = {line.split("\t")[0]: line.split("\t")[1:] for line in table.splitlines()[1:]}
            assert rows["eu"][:2] == ["2 / 2", "1"] and rows["us"][:2] == ["1 / 1", "0.431"], rows
            assert rows["all"][0] == "3 / 3"
            time.sleep(2.5)  # a redraw keeps the opened details open
            assert page.is_visible("#online .online-segments[data-version='1']")
            page.screenshot(path=str(tmp_path / "online-ranking.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
