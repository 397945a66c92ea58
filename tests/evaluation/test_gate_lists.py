"""The offline gate of a ranker that answers lists of item ids, and the gate by segment for every
task: the v3 that reverses region 1's rankings passes a holdout lacking region 1, and is caught
per segment when region 1 is there."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LogisticRegression, Ridge

from changeover.evaluation.data import DataError
from changeover.evaluation.gate import PredictionBatch, PredictionError, Predictor, run_gate
from changeover.evaluation.report import render_html
from changeover.evaluation.rules import RulesError

FAST: dict[str, Any] = {"n_boot": 300, "batch_size": 64}
ITEMS = np.arange(100, 160)  # a catalogue of 60 item ids


def affinity(users: np.ndarray) -> np.ndarray:
    """The true taste of each user for each item: deterministic, distinct per pair."""
    u, i = users.reshape(-1, 1).astype(np.int64), ITEMS.reshape(1, -1)
    return ((u * 7919 + i * 104729) % 1009) / 1009.0


def region(users: np.ndarray) -> np.ndarray:
    return np.where(users % 20 == 1, 1, np.where(users % 2 == 0, 0, 2))


def ranker(noise: float = 0.0, reverse_region: int | None = None, k: int = 10) -> Predictor:
    """Top-k ids by taste plus noise; ``reverse_region``: that region's users get the list upside down."""
    def predict(frame: pd.DataFrame) -> PredictionBatch:
        users = frame["user_id"].to_numpy()
        scores = affinity(users) + noise * np.sin(users.reshape(-1, 1) * 3.7 + ITEMS * 1.3)
        if reverse_region is not None:
            scores = np.where((region(users) == reverse_region)[:, None], -scores, scores)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return PredictionBatch(ranking=ITEMS[order])

    return predict


def holdout(n_users: int = 300, *, lists: bool = True, without_region: int | None = None) -> pd.DataFrame:
    users = np.arange(n_users)
    if without_region is not None:
        users = users[region(users) != without_region]
    relevant = ITEMS[np.argsort(-affinity(users), axis=1)[:, :5]]  # each user's 5 favourite items
    if lists:
        return pd.DataFrame({"user_id": users, "region": region(users),
                             "relevant": [json.dumps(r.tolist()) for r in relevant]})
    # (user, item, relevance) rows: the 5 relevant items, and 3 items judged not relevant
    rows = [(u, r, item, int(item in set(rel))) for u, r, rel in zip(users, region(users), relevant, strict=True)
            for item in np.concatenate([rel, ITEMS[:3]])]
    frame = pd.DataFrame(rows, columns=["user_id", "region", "item_id", "relevance"])
    return frame.drop_duplicates(["user_id", "item_id"])  # an item both relevant and among the 3: once


def gate(data: pd.DataFrame, champion: Predictor | None, candidate: Predictor, require: dict | None = None,
         **kw: Any) -> Any:
    target = "relevant" if "relevant" in data.columns else "relevance"
    query = None if target == "relevant" else "user_id"
    args: dict[str, Any] = {"task": "ranking", "data": data, "target": target, "champion": champion,
                            "candidate": candidate, "require": require, "ks": (5, 10), "query_column": query,
                            "feature_columns": ["user_id"], "lists": True, **FAST}
    return run_gate(**(args | kw))


def test_a_better_list_ranker_passes_with_every_figure_and_its_interval() -> None:
    result = gate(holdout(), ranker(noise=0.6), ranker(), {"ndcg_at_10": {"better_than": "champion"},
                                                          "coverage_at_10": {"not_worse_than": "champion", "margin": 0.5}})
    assert result.verdict == "pass", [r.reason for r in result.rules]
    names = {f"{m}_at_{k}" for k in (5, 10) for m in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")}
    assert names | {"mrr"} <= set(result.metrics)
    m = result.metrics
    assert m["precision_at_5"].candidate == 1.0 and m["recall_at_5"].candidate == 1.0  # the truth's own top 5
    assert m["ndcg_at_10"].candidate == pytest.approx(1.0) and m["mrr"].candidate == 1.0
    assert m["precision_at_10"].candidate == 0.5  # 5 relevant among 10 answered
    assert 0 < m["coverage_at_10"].candidate <= 1 and m["coverage_at_10"].ci_low is not None
    ndcg = m["ndcg_at_10"]
    assert ndcg.ci_low is not None and ndcg.ci_high is not None and 0 < ndcg.ci_low <= ndcg.diff <= ndcg.ci_high
    assert (result.n_rows, result.n_queries, result.lists) == (300, 300, True)
    out = result.to_dict()
    json.dumps(out)
    assert out["answers"] == "lists" and out["prediction_differences"]["measure"].startswith("overlap@10")
    assert "overlap@10" in render_html(result, model="recs", champion_label="v1", candidate_label="v2")


def test_rows_and_lists_of_relevant_items_give_the_same_figures() -> None:
    by_lists = gate(holdout(), ranker(noise=0.6), ranker(noise=0.2))
    by_rows = gate(holdout(lists=False), ranker(noise=0.6), ranker(noise=0.2), item_column="item_id")
    # the rows name 3 more items per user (not relevant): only coverage's catalogue may differ
    for name, m in by_lists.metrics.items():
        if name.startswith(("precision", "recall", "ndcg", "map", "hit_rate", "mrr")):
            assert by_rows.metrics[name].candidate == pytest.approx(m.candidate), name
            assert by_rows.metrics[name].champion == pytest.approx(m.champion), name
    assert by_rows.n_rows > by_rows.n_queries == 300
    # the item column is found by its usual name when not given
    default = gate(holdout(lists=False), None, ranker())
    assert default.metrics["precision_at_5"].candidate == 1.0


def test_v3_reversing_region_1_passes_without_region_1_and_fails_per_segment_with_it() -> None:
    rule = {"ndcg_at_10": {"not_worse_than": "champion", "margin": 0.1, "per_segment": True}}
    lacking = gate(holdout(without_region=1), ranker(), ranker(reverse_region=1), rule, segment_column="region")
    assert lacking.verdict == "pass", [r.reason for r in lacking.rules]
    assert set(lacking.segments) == {"0", "2"}

    present = gate(holdout(), ranker(), ranker(reverse_region=1), rule, segment_column="region")
    overall = [r for r in present.rules if r.segment is None]
    assert [r.passed for r in overall] == [True]  # 15 users of 300: the overall figure hides them
    by_segment = {r.segment: r for r in present.rules if r.segment is not None}
    assert {s: r.passed for s, r in by_segment.items()} == {"0": True, "1": False, "2": True}
    assert present.verdict == "fail"
    failed = by_segment["1"]
    assert failed.rule == "ndcg_at_10 not worse than champion by more than 0.1 in region=1"
    assert failed.reason.startswith("in region=1: ") and failed.interval is not None and failed.interval[1] < -0.5
    seg = present.segments["1"]
    assert seg.n_units == 15 and seg.metrics["ndcg_at_10"].candidate == 0.0
    out = present.to_dict()
    assert out["segment_column"] == "region" and out["segments"]["1"]["n_units"] == 15
    assert [r["segment"] for r in out["rules"] if "segment" in r] == ["0", "1", "2"]
    html = render_html(present, model="recs", champion_label="v2", candidate_label="v3")
    assert "By segment (region)" in html and "in region=1" in html


def test_lists_shorter_than_k_and_empty_lists_follow_the_documented_rule() -> None:
    short = gate(holdout(60), None, ranker(k=3), ks=(3, 10))
    assert short.metrics["precision_at_10"].candidate == short.metrics["precision_at_3"].candidate == 1.0
    assert short.metrics["recall_at_10"].candidate == pytest.approx(3 / 5)
    assert any("lists of 3 items; at k = 10" in note for note in short.notes)
    assert short.to_dict()["notes"] == short.notes

    def empty(frame: pd.DataFrame) -> PredictionBatch:
        return PredictionBatch(ranking=np.empty((len(frame), 0), dtype=np.int64))

    nothing = gate(holdout(60), None, empty)
    assert nothing.metrics["ndcg_at_10"].candidate == 0.0 and nothing.metrics["coverage_at_10"].candidate == 0.0
    assert any("answered empty lists" in note for note in nothing.notes)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (lambda n: np.full((n, 3), 0.5), "candidate: item ids are integers or strings, not float64 values"),
        (lambda n: np.tile([101, 102, 101], (n, 1)), "candidate: row 1 names item '101' twice"),
        (lambda n: np.arange(n), r"shape \(rows, k\)"),
        (lambda n: np.tile([101, 102], (n + 1, 1)), "candidate: 61 lists for 60 queries"),
    ],
)
def test_an_answer_that_is_not_a_list_of_ids_fails_the_gate_naming_the_version(answer: Any, match: str) -> None:
    def bad(frame: pd.DataFrame) -> PredictionBatch:
        return PredictionBatch(ranking=answer(len(frame)))

    with pytest.raises(PredictionError, match=match):
        gate(holdout(60), None, bad)


@pytest.mark.parametrize(
    ("data", "kw", "match"),
    [
        (pd.DataFrame({"user_id": [1, 2], "relevant": ["[1", "[2]"]}), {}, "column 'relevant': row 2: not a JSON list"),
        (pd.DataFrame({"user_id": [1, 2], "relevant": ["[]", ""]}), {}, "no query has a relevant item"),
        (pd.DataFrame({"user_id": [1, 1], "item_id": [5, 5], "relevance": [1, 0]}), {},
         "item '5' is judged twice"),
        (pd.DataFrame({"user_id": [1, 2], "relevance": [1, 0]}), {}, "give the item column"),
        (pd.DataFrame({"user_id": [1, 1], "x": [0, 1], "item_id": [5, 6], "relevance": [1, 0]}),
         {"feature_columns": ["user_id", "x"]}, "feature columns vary within a query: 'x'"),
        (pd.DataFrame({"user_id": [1, 2], "relevant": ["[1]", "[2]"]}), {"segment_column": "nope"},
         "segment column 'nope' is missing"),
        (pd.DataFrame({"user_id": [1, 1], "item_id": [5, 6], "relevance": [1, 0], "region": [0, 1]}),
         {"segment_column": "region"}, "segment column 'region' varies within query 1"),
        (pd.DataFrame({"user_id": range(60), "relevant": ["[100]"] * 60, "region": range(60)}),
         {"segment_column": "region"}, "has 60 values; a gate breaks down by at most 50"),
    ],
)
def test_bad_holdouts_are_data_errors_naming_the_column(data: pd.DataFrame, kw: dict, match: str) -> None:
    target = "relevant" if "relevant" in data.columns else "relevance"
    with pytest.raises(DataError, match=match):
        run_gate(task="ranking", data=data, target=target, champion=None, candidate=ranker(), require=None,
                 query_column=None if target == "relevant" else "user_id",
                 feature_columns=kw.pop("feature_columns", ["user_id"]), lists=True, **FAST, **kw)


@pytest.mark.parametrize(
    ("require", "segment", "match"),
    [
        ({"ndcg_at_10": {"min": 0.1, "per_segment": True}}, None, "per_segment needs a segment column"),
        ({"latency_p99_ms": {"max": 5, "per_segment": True}}, "region", "latency is measured per batch"),
        ({"ndcg_at_10": {"min": 0.1, "per_segment": "yes"}}, "region", "per_segment is true or false"),
    ],
)
def test_per_segment_rules_are_checked_before_any_prediction(require: dict, segment: str | None, match: str) -> None:
    def never(frame: pd.DataFrame) -> PredictionBatch:
        raise AssertionError("predicted before the rules were checked")

    with pytest.raises(RulesError, match=match):
        gate(holdout(30), None, never, require, segment_column=segment)


def test_classification_and_regression_break_down_by_segment() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    frame = pd.DataFrame(x[:, :5], columns=[f"f{i}" for i in range(5)]).assign(label=y)
    frame["site"] = np.where(frame["f0"] > 15, "large", "small")  # a column that is not a feature
    good = LogisticRegression(max_iter=2000).fit(x[:, :5], y)
    worse = LogisticRegression(C=1e-4, max_iter=2000).fit(x[:, :5], y)

    def clf(model: Any) -> Predictor:
        return lambda b: PredictionBatch(model.predict(b.to_numpy()), model.predict_proba(b.to_numpy()), model.classes_)

    result = run_gate(task="classification", data=frame, target="label", champion=clf(good), candidate=clf(worse),
                      require={"accuracy": {"not_worse_than": "champion", "margin": 0.5, "per_segment": True}},
                      segment_column="site", **FAST)
    assert set(result.segments) == {"large", "small"}
    assert sum(s.n_units for s in result.segments.values()) == len(frame)
    for seg in result.segments.values():
        assert {"accuracy", "roc_auc", "log_loss"} <= set(seg.metrics)
        assert "latency_p99_ms" not in seg.metrics
    assert [r.segment for r in result.rules] == [None, "large", "small"]
    json.dumps(result.to_dict())

    xd, yd = load_diabetes(return_X_y=True)
    reg = pd.DataFrame(xd[:, :4], columns=list("abcd")).assign(y=yd, sex=np.where(xd[:, 1] > 0, 1, 2))
    ridge, dummy = Ridge().fit(xd[:, :4], yd), DummyRegressor().fit(xd[:, :4], yd)
    out = run_gate(task="regression", data=reg, target="y",
                   champion=lambda b: PredictionBatch(dummy.predict(b.to_numpy())),
                   candidate=lambda b: PredictionBatch(ridge.predict(b.to_numpy())),
                   require={"mae": {"better_than": "champion", "per_segment": True}}, segment_column="sex", **FAST)
    assert set(out.segments) == {"1", "2"} and out.verdict == "pass"
    assert out.segments["1"].metrics["mae"].ci_high is not None


def test_a_score_per_row_ranker_keeps_working_and_breaks_down_by_segment() -> None:
    rng = np.random.default_rng(0)
    q = np.repeat(np.arange(40), 6)
    rel = rng.integers(0, 3, len(q))
    frame = pd.DataFrame({"q": q, "signal": rel + rng.normal(0, 0.5, len(q)), "rel": rel, "zone": q % 2})
    result = run_gate(task="ranking", data=frame, target="rel", query_column="q", feature_columns=["signal"],
                      champion=lambda b: PredictionBatch(-b["signal"].to_numpy()),
                      candidate=lambda b: PredictionBatch(b["signal"].to_numpy()),
                      require={"ndcg_at_5": {"better_than": "champion", "per_segment": True}},
                      segment_column="zone", **FAST)
    assert result.verdict == "pass" and not result.lists
    assert "hit_rate_at_5" in result.metrics and "coverage_at_5" not in result.metrics  # no item ids
    assert {s: seg.n_units for s, seg in result.segments.items()} == {"0": 20, "1": 20}
    refused = run_gate(task="ranking", data=frame, target="rel", query_column="q", feature_columns=["signal"],
                       champion=None, candidate=lambda b: PredictionBatch(b["signal"].to_numpy()),
                       require={"coverage_at_5": {"min": 0.1}}, **FAST)
    assert "coverage needs the item ids" in refused.rules[0].reason
