"""Online metrics of a ranker: each labelled request's served list scored against its feedback
(clicked or relevant items, or graded relevance), averaged per version and per segment, in the
API, in /metrics, and beside the other tasks."""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import pytest
from monhelpers import TOKEN, LiveServer, add_feedback, add_request, build_app, push
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from changeover.monitoring.online import OTHER_SEGMENT, RANKING_METRICS, online_metrics, online_report, primary_metric
from changeover.monitoring.prom import register_monitoring_metrics
from changeover.store import tables as t
from changeover.store.store import Store

SERVED = list(range(1, 11))  # items 1..10, best first


def ranked(label: Any, segment: str | None = None, *, version: int = 1, served: list[Any] | None = None,
           reward: float | None = None) -> dict[str, Any]:
    output = {"items": served or SERVED, "ranking": served or SERVED}
    return {"version": version, "output": output, "label": label, "reward": reward, "segment": segment}


# the hand-worked case: three labelled requests of v1, each served items 1..10
#   A  clicked [2, 11]: one hit at rank 2; item 11 was not served (relevant, not retrieved)
#   B  graded {1: 3, 4: 1, 20: 0}: hits at ranks 1 and 4; item 20 is not relevant (relevance 0)
#   C  clicked []: nobody clicked
NDCG_A = (1 / math.log2(3)) / (1 + 1 / math.log2(3))  # DCG 1/log2(3); ideal: both relevant items, gain 1
NDCG_B = (3 / math.log2(2) + 1 / math.log2(5)) / (3 + 1 / math.log2(3))  # ideal: gains 3, 1
ROWS = [
    ranked([2, 11], "eu"),
    ranked({"1": 3, "4": 1, "20": 0}, "us"),
    ranked([], "eu"),
    ranked(None, "us"),  # served, no feedback yet
]


def test_a_hand_worked_case() -> None:
    figures = online_metrics(ROWS)[1]
    assert figures["task"] == "ranking"
    assert (figures["requests"], figures["labelled"], figures["compared"]) == (4, 3, 3)
    m = figures["metrics"]
    assert set(m) == set(RANKING_METRICS)
    assert m["precision_at_10"] == pytest.approx((1 / 10 + 2 / 10 + 0) / 3)
    assert m["precision_at_5"] == pytest.approx((1 / 5 + 2 / 5 + 0) / 3)
    # recall and NDCG are undefined for C (no relevant item): means over A and B
    assert m["recall_at_10"] == pytest.approx((1 / 2 + 2 / 2) / 2)
    assert m["ndcg_at_10"] == pytest.approx((NDCG_A + NDCG_B) / 2)
    assert m["ndcg_at_10"] == pytest.approx((0.386853 + 0.944848) / 2, abs=1e-6)
    assert m["ctr_at_10"] == pytest.approx((1 + 2 + 0) / 3)  # clicks per request in the top 10
    assert m["hit_at_10"] == pytest.approx(2 / 3)
    assert m["mrr"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    r = figures["ranking"]
    assert r["ks"] == [5, 10]
    assert (r["with_relevant"], r["relevant_items"], r["relevant_not_served"], r["unscored"]) == (2, 4, 1, 0)
    # CTR@10 per request 1, 2, 0: mean 1, sample variance 1, a normal 95% interval clamped at 0
    assert r["intervals"]["ctr_at_10"] == pytest.approx([0.0, 1 + 1.959963984540054 * math.sqrt(1 / 3)])
    assert primary_metric(figures) == ("ndcg_at_10", m["ndcg_at_10"])


def test_per_segment() -> None:
    segments = online_metrics(ROWS)[1]["segments"]
    assert list(segments) == ["eu", "us"]
    eu, us = segments["eu"], segments["us"]
    assert (eu["requests"], eu["labelled"], eu["compared"]) == (2, 2, 2)
    assert (us["requests"], us["labelled"], us["compared"]) == (2, 1, 1)
    assert eu["metrics"]["precision_at_10"] == pytest.approx(0.05)
    assert eu["metrics"]["ndcg_at_10"] == pytest.approx(NDCG_A)  # C leaves NDCG undefined
    assert eu["metrics"]["ctr_at_10"] == pytest.approx(0.5)
    assert eu["metrics"]["mrr"] == pytest.approx(0.25)
    assert us["metrics"]["ndcg_at_10"] == pytest.approx(NDCG_B) and us["metrics"]["ctr_at_10"] == 2.0


def test_segments_past_the_bound_are_pooled() -> None:
    rows = [ranked([1], "a"), ranked([1], "a"), ranked([11], "b"), ranked([2], "c"), ranked([1], None)]
    figures = online_metrics(rows, max_segments=1)[1]
    assert list(figures["segments"]) == ["a", OTHER_SEGMENT]
    other = figures["segments"][OTHER_SEGMENT]
    assert (other["requests"], other["compared"]) == (2, 2)
    assert other["metrics"]["mrr"] == pytest.approx((0 + 1 / 2) / 2)
    assert figures["ranking"]["segments_pooled"] == 2
    assert figures["compared"] == 5  # a request without a segment is in no segment, but in the version's figures
    assert online_metrics([ranked([1])])[1]["segments"] == {}


def test_versions_and_tasks_side_by_side() -> None:
    rows = [
        *ROWS,
        ranked([10], version=2, served=[10, 9, 8]),
        ranked(7, version=2, served=[10, 9, 8]),  # a number names no items: labelled, not scored
        {"version": 3, "output": {"label": 1}, "label": 1, "reward": None, "segment": "eu"},
        ranked(None, version=4, reward=1.0),  # a ranker without labels: no task yet
    ]
    by_version = online_metrics(rows)
    two = by_version[2]
    assert two["task"] == "ranking" and two["compared"] == 1 and two["ranking"]["unscored"] == 1
    assert two["metrics"]["mrr"] == 1.0 and two["metrics"]["precision_at_10"] == pytest.approx(1 / 3)  # 3 items shown
    assert by_version[3]["task"] == "classification" and "segments" not in by_version[3]
    assert by_version[4]["task"] is None and by_version[4]["mean_reward"] == 1.0
    assert primary_metric(by_version[4]) == ("mean_reward", 1.0)


def test_feedback_that_cannot_score_the_list_is_counted_not_scored() -> None:
    figures = online_metrics([ranked([1.5]), ranked({"1": -1}), ranked([1])])[1]
    assert figures["compared"] == 1 and figures["ranking"]["unscored"] == 2
    assert online_metrics([ranked([1.5])])[1]["metrics"] == {name: None for name in RANKING_METRICS}


def fill(store: Store) -> float:
    """v1 of a ranker served the hand-worked case an hour minus a minute ago (segments in the log)."""
    push(store, "recs", 1)
    now = time.time()
    for i, row in enumerate(ROWS):
        rid = add_request(store, "recs", 1, now - 60 + i, output=row["output"])
        with store.tx() as conn:
            conn.execute(update(t.requests).where(t.requests.c.request_id == rid).values(segment=row["segment"]))
        if row["label"] is not None:
            add_feedback(store, rid, "recs", now - 30, now - 60 + i, label=row["label"])
    return now


def test_online_report_from_the_store(store: Store) -> None:
    now = fill(store)
    figures = online_report(store, "recs", window_s=3600, now=now)["versions"]["1"]
    assert figures["metrics"]["ndcg_at_10"] == pytest.approx((NDCG_A + NDCG_B) / 2)
    assert figures["segments"]["eu"]["metrics"]["ndcg_at_10"] == pytest.approx(NDCG_A)
    assert online_report(store, "recs", window_s=3600, now=now, task="regression")["versions"]["1"]["task"] is None


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_prometheus_gauges_per_version_and_segment(store: Store) -> None:
    now = fill(store)
    registry = CollectorRegistry()
    metrics = register_monitoring_metrics(registry)
    metrics.refresh(store, now)
    got = samples(registry)
    version = (("metric", "ndcg_at_10"), ("model", "recs"), ("version", "1"))
    assert got[("changeover_online_metric", version)] == pytest.approx((NDCG_A + NDCG_B) / 2)
    assert got[("changeover_online_metric", (("metric", "ctr_at_10"), ("model", "recs"), ("version", "1")))] == 1.0
    eu = (("metric", "ndcg_at_10"), ("model", "recs"), ("segment", "eu"), ("version", "1"))
    assert got[("changeover_online_segment_metric", eu)] == pytest.approx(NDCG_A)
    per_segment = {labels for name, labels in got if name == "changeover_online_segment_metric"}
    assert {dict(labels)["metric"] for labels in per_segment} == {"precision_at_10", "recall_at_10", "ndcg_at_10",
                                                                   "ctr_at_10", "mrr"}
    metrics.update(online={})  # the version is gone: so are its gauges
    assert not any(name.startswith("changeover_online") for name, _ in samples(registry))


def test_the_online_api_reads_a_ranker(store: Store, tmp_path: Any) -> None:
    fill(store)
    with LiveServer(build_app(store, tmp_path)) as server, httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}) as c:
        for params in ({"window": "1h"}, {"window": "1h", "task": "ranking"}):
            r = c.get("/api/models/recs/online", params=params)
            assert r.status_code == 200, r.text
            one = r.json()["versions"]["1"]
            assert one["task"] == "ranking" and one["compared"] == 3
            assert one["metrics"]["mrr"] == pytest.approx(0.5)
            assert set(one["segments"]) == {"eu", "us"}
        assert c.get("/api/models/recs/online", params={"task": "lists"}).status_code == 422
