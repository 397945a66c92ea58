from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from changeover.domain.evidence import Moments
from changeover.domain.ranking_feedback import (
    RankingMoments,
    ctr_at_k,
    hit_at_k,
    metric_names,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    relevance_by_item,
    relevant_not_served,
    score_ranking,
)
from changeover.evaluation.ranking import per_query_metrics

LOG2_3, LOG2_5 = math.log2(3), math.log2(5)


def test_worked_case_with_graded_feedback() -> None:
    served = ["a", "b", "c", "d", "e"]
    # b and d were served and are relevant; x is relevant but was not served; e is judged 0
    feedback = {"b": 3, "d": 1, "x": 2, "e": 0}
    got = score_ranking(served, feedback, ks=(3, 5, 10))
    # gains in served order: 0, 3, 0, 1, 0; relevant: b, d, x -> ideal gains 3, 2, 1
    # k = 3: hits {b} = 1
    assert got["precision_at_3"] == pytest.approx(1 / 3)
    assert got["recall_at_3"] == pytest.approx(1 / 3)  # 1 of 3 relevant (x counts)
    # DCG@3 = 3/log2(3) = 1.892789; IDCG@3 = 3/1 + 2/log2(3) + 1/log2(4) = 4.761860
    assert got["ndcg_at_3"] == pytest.approx((3 / LOG2_3) / (3 + 2 / LOG2_3 + 0.5))
    assert got["ndcg_at_3"] == pytest.approx(0.397490, abs=1e-6)
    assert got["ctr_at_3"] == 1.0
    assert got["hit_at_3"] == 1.0
    # k = 5: hits {b, d} = 2
    assert got["precision_at_5"] == pytest.approx(2 / 5)
    assert got["recall_at_5"] == pytest.approx(2 / 3)
    # DCG@5 = 3/log2(3) + 1/log2(5) = 2.323466; IDCG@5 = IDCG@3 (three relevant items)
    assert got["ndcg_at_5"] == pytest.approx(0.487932, abs=1e-6)
    assert got["ctr_at_5"] == 2.0
    # k = 10 > 5 items served: precision divides by the 5 shown
    assert got["precision_at_10"] == pytest.approx(2 / 5)
    assert got["recall_at_10"] == pytest.approx(2 / 3)
    assert got["ndcg_at_10"] == pytest.approx(got["ndcg_at_5"])
    # the first relevant item (b) is at rank 2
    assert got["mrr"] == 0.5
    assert got["relevant_items"] == 3.0
    assert got["relevant_not_served"] == 1.0
    assert list(got) == metric_names((3, 5, 10))


def test_worked_case_with_clicks() -> None:
    served = [1, 2, 3, 4]
    clicks = [3, 7]  # 7 was clicked elsewhere
    assert precision_at_k(served, clicks, 2) == 0.0
    assert precision_at_k(served, clicks, 4) == 0.25
    assert recall_at_k(served, clicks, 4) == 0.5
    # DCG@4 = 1/log2(4) = 0.5; IDCG@4 = 1 + 1/log2(3) = 1.630930
    assert ndcg_at_k(served, clicks, 4) == pytest.approx(0.306574, abs=1e-6)
    assert ctr_at_k(served, clicks, 4) == 1.0
    assert hit_at_k(served, clicks, 2) == 0.0
    assert hit_at_k(served, clicks, 3) == 1.0
    assert reciprocal_rank(served, clicks) == pytest.approx(1 / 3)
    assert relevant_not_served(served, clicks) == 1


def test_each_function_is_what_score_ranking_reports() -> None:
    rng = random.Random(3)
    for _ in range(50):
        served = rng.sample(range(20), rng.randint(0, 8))
        feedback = {i: rng.choice([0, 0, 1, 2, 3]) for i in rng.sample(range(20), rng.randint(0, 8))}
        got = score_ranking(served, feedback, ks=(1, 3, 12))
        for k in (1, 3, 12):
            assert got[f"precision_at_{k}"] == precision_at_k(served, feedback, k)
            assert got[f"recall_at_{k}"] == recall_at_k(served, feedback, k)
            assert got[f"ndcg_at_{k}"] == ndcg_at_k(served, feedback, k)
            assert got[f"ctr_at_{k}"] == ctr_at_k(served, feedback, k)
            assert got[f"hit_at_{k}"] == hit_at_k(served, feedback, k)
        assert got["mrr"] == reciprocal_rank(served, feedback)
        assert got["relevant_not_served"] == relevant_not_served(served, feedback)


# --- edge cases: each a documented counting rule -----------------------------------------

@pytest.mark.parametrize(
    ("served", "feedback", "k", "expected"),
    [
        # no relevant item (no click): precision, CTR, hit and MRR are 0, recall and NDCG undefined
        ([1, 2, 3], [], 3, {"precision": 0.0, "recall": None, "ndcg": None, "ctr": 0.0, "hit": 0.0, "mrr": 0.0}),
        ([1, 2, 3], {1: 0, 9: 0.0}, 3,
         {"precision": 0.0, "recall": None, "ndcg": None, "ctr": 0.0, "hit": 0.0, "mrr": 0.0}),
        # an empty answer shows nothing and finds nothing
        ([], [1, 2], 3, {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "ctr": 0.0, "hit": 0.0, "mrr": 0.0}),
        ([], [], 3, {"precision": 0.0, "recall": None, "ndcg": None, "ctr": 0.0, "hit": 0.0, "mrr": 0.0}),
        # k larger than the list: precision over the items shown (2 of 2), the ideal cut at k
        ([1, 2], [1, 2], 10, {"precision": 1.0, "recall": 1.0, "ndcg": 1.0, "ctr": 2.0, "hit": 1.0, "mrr": 1.0}),
        # ... and relevant items the list lacks keep recall and NDCG below 1
        # NDCG@10 = 1 / (1 + 1/log2(3))
        ([1, 2], [1, 5], 10,
         {"precision": 0.5, "recall": 0.5, "ndcg": 1 / (1 + 1 / LOG2_3), "ctr": 1.0, "hit": 1.0, "mrr": 1.0}),
        # every relevant item elsewhere: all zero, nothing undefined
        ([1, 2], {7: 2, 8: 1}, 2, {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "ctr": 0.0, "hit": 0.0, "mrr": 0.0}),
        # a relevant item below the cut: MRR sees the whole list, the @k metrics do not
        ([1, 2, 3, 4], [4], 2, {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "ctr": 0.0, "hit": 0.0, "mrr": 0.25}),
        # a click named twice counts once
        ([1, 2], [2, 2, 2], 2, {"precision": 0.5, "recall": 1.0, "ndcg": 1 / LOG2_3, "ctr": 1.0, "hit": 1.0, "mrr": 0.5}),
        # ints and strings name the same item
        (["10", "11"], {10: 1, 11: 1}, 2,
         {"precision": 1.0, "recall": 1.0, "ndcg": 1.0, "ctr": 2.0, "hit": 1.0, "mrr": 1.0}),
        # graded relevance: gains are linear (offline's gain), DCG = 1 + 3/log2(3), IDCG = 3 + 1/log2(3)
        ([1, 2], {1: 1, 2: 3}, 2,
         {"precision": 1.0, "recall": 1.0, "ndcg": (1 + 3 / LOG2_3) / (3 + 1 / LOG2_3), "ctr": 2.0,
          "hit": 1.0, "mrr": 1.0}),
        # fractional and boolean relevance
        ([1, 2], {1: 0.5, 2: True}, 1,
         {"precision": 1.0, "recall": 0.5, "ndcg": 0.5, "ctr": 1.0, "hit": 1.0, "mrr": 1.0}),
    ],
)
def test_edge_cases(served: list[Any], feedback: Any, k: int, expected: dict[str, float | None]) -> None:
    got = score_ranking(served, feedback, ks=(k,))
    for metric, value in expected.items():
        name = "mrr" if metric == "mrr" else f"{metric}_at_{k}"
        if value is None:
            assert got[name] is None, name
        else:
            assert got[name] == pytest.approx(value), name


def test_ties_in_graded_relevance_do_not_move_ndcg() -> None:
    feedback = {1: 2, 2: 2, 3: 1, 4: 2}
    # items 1, 2 and 4 tie at relevance 2: any order of them among the top three is ideal
    for served in ([1, 2, 4, 3], [4, 2, 1, 3], [2, 4, 1, 3]):
        assert ndcg_at_k(served, feedback, 3) == pytest.approx(1.0)
        assert ndcg_at_k(served, feedback, 4) == pytest.approx(1.0)
    # swapping two tied items deeper down changes nothing either
    assert ndcg_at_k([3, 1, 2, 4], feedback, 4) == pytest.approx(ndcg_at_k([3, 4, 2, 1], feedback, 4))
    # a less relevant item above a tie costs: DCG@3 = 1 + 2/log2 3 + 2/2, IDCG@3 = 2 + 2/log2 3 + 1
    assert ndcg_at_k([3, 1, 2, 4], feedback, 3) == pytest.approx((1 + 2 / LOG2_3 + 1) / (2 + 2 / LOG2_3 + 1))


@pytest.mark.parametrize(
    ("served", "feedback", "message"),
    [
        ([1, 2, 1], [1], r"served ranking: item 1 appears twice \(positions 1 and 3\)"),
        ([1, "1"], [1], "served ranking: item '1' appears twice"),
        ([1.0], [1], "item ids must be ints or strings, got 1.0"),
        ("abc", [1], "not a single string"),
        ([1], "abc", "not a string"),
        ([1], 5, "feedback must be item ids or a mapping"),
        ([1], [None], "item ids must be ints or strings, got None"),
        ([1], {1: -1}, "relevance of item 1 must be a finite number >= 0, got -1"),
        ([1], {1: math.nan}, "relevance of item 1 must be"),
        ([1], {1: math.inf}, "relevance of item 1 must be"),
        ([1], {"x": "high"}, "relevance of item 'x' must be"),
        ([1], {1: None}, "relevance of item 1 must be"),
        ([1], {1: 1, "1": 2}, "feedback names item '1' twice"),
        ([1], {2.5: 1}, "item ids must be ints or strings, got 2.5"),
    ],
)
def test_bad_input_is_refused(served: Any, feedback: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score_ranking(served, feedback, ks=(3,))


@pytest.mark.parametrize("ks", [(), (0,), (3, -1), (2.5,), ("10",)])
def test_bad_ks_are_refused(ks: Any) -> None:
    with pytest.raises(ValueError, match="k"):
        score_ranking([1], [1], ks)


def test_ks_may_be_one_int_and_repeat() -> None:
    assert list(score_ranking([1], [1], 3)) == metric_names(3)
    assert metric_names((5, 5, 10)) == metric_names((5, 10))


def test_relevance_by_item() -> None:
    assert relevance_by_item({1: 2, "b": 0}) == {"1": 2.0, "b": 0.0}
    assert relevance_by_item({3, 4}) == {"3": 1.0, "4": 1.0}
    numpy_ids: Any = (np.int64(7),)
    assert relevance_by_item(numpy_ids) == {"7": 1.0}
    assert relevance_by_item({1: np.float32(0.5)}) == {"1": 0.5}


# --- agreement with the offline gate (evaluation/ranking.py) -------------------------------

def offline(served: list[int], relevance: Mapping[int, float], ks: list[int]) -> dict[str, float]:
    """The offline gate's figures for one query whose rows are the served items scored in
    served order, then any other judged items below them."""
    rows = served + [item for item in relevance if item not in served]
    scores = np.arange(len(rows), 0, -1, dtype=np.float64)  # distinct: no tie rule involved
    rel = [float(relevance.get(item, 0.0)) for item in rows]
    _, per_query = per_query_metrics(rel, scores, np.zeros(len(rows)), ks)
    return {name: float(v[0]) for name, v in per_query.items()}


def test_agrees_with_the_offline_gate_when_the_feedback_judges_served_items() -> None:
    rng = random.Random(7)
    checked = 0
    for _ in range(300):
        served = rng.sample(range(40), rng.randint(1, 15))
        judged = rng.sample(served, rng.randint(1, len(served)))
        relevance = {item: rng.choice([0, 0, 1, 2, 3, 0.5]) for item in judged}
        if not any(relevance.values()):
            continue  # offline leaves such a query out; online rules are tested above
        ks = sorted({rng.randint(1, 20), rng.randint(1, 20)})
        online, expected = score_ranking(served, relevance, ks), offline(served, relevance, ks)
        for k in ks:
            for metric in ("precision", "recall", "ndcg"):
                name = f"{metric}_at_{k}"
                assert online[name] == pytest.approx(expected[name], abs=1e-12), (served, relevance, name)
        assert online["mrr"] == pytest.approx(expected["mrr"], abs=1e-12)
        checked += 1
    assert checked > 200


def test_unserved_relevant_items_count_as_ranked_below_the_list() -> None:
    # for k within the list, online figures with items found elsewhere equal the offline
    # figures of a query in which those items sit just below the served list
    rng = random.Random(8)
    for _ in range(300):
        served = rng.sample(range(20), rng.randint(1, 10))
        elsewhere = rng.sample(range(20, 40), rng.randint(1, 5))
        relevance = {item: rng.choice([0, 1, 2]) for item in rng.sample(served, rng.randint(0, len(served)))}
        relevance |= {item: rng.choice([1, 2, 3]) for item in elsewhere}
        ks = sorted({rng.randint(1, len(served)), len(served)})
        online, expected = score_ranking(served, relevance, ks), offline(served, relevance, ks)
        for k in ks:
            for metric in ("precision", "recall", "ndcg"):
                name = f"{metric}_at_{k}"
                assert online[name] == pytest.approx(expected[name], abs=1e-12), (served, relevance, name)
        assert online["relevant_not_served"] == len(elsewhere)


# --- accumulating per request ---------------------------------------------------------------

def test_ranking_moments_accumulate_per_request() -> None:
    moments = RankingMoments()
    moments.add(score_ranking([1, 2], [2], ks=(2,)))  # precision 1/2, recall 1, mrr 1/2
    moments.add(score_ranking([1, 2], [], ks=(2,)))  # precision 0, recall None, mrr 0
    moments.add(score_ranking([1, 2], [1, 2], ks=(2,)))  # precision 1, recall 1, mrr 1
    assert moments.requests == 3
    p = moments.moments("precision_at_2")
    assert (p.n, p.total, p.total_sq) == (3, 1.5, 1.25)
    r = moments.moments("recall_at_2")
    assert (r.n, r.total, r.total_sq) == (2, 2.0, 2.0)  # the undefined one is not counted
    assert moments.mean("precision_at_2") == pytest.approx(0.5)
    assert moments.mean("mrr") == pytest.approx(0.5)
    assert moments.moments("ndcg_at_2").n == 2
    assert moments.mean("no_such_metric") is None
    assert moments.moments("no_such_metric") == Moments()


def test_ranking_moments_merge_is_the_sum_of_requests() -> None:
    rng = random.Random(9)
    scores = [score_ranking(rng.sample(range(10), 5), rng.sample(range(10), rng.randint(0, 3)), ks=(3,))
              for _ in range(40)]
    whole, first, second = RankingMoments(), RankingMoments(), RankingMoments()
    for i, s in enumerate(scores):
        whole.add(s)
        (first if i < 15 else second).add(s)
    merged = first + second
    assert merged.requests == whole.requests == 40
    for name in metric_names(3):
        a, b = merged.moments(name), whole.moments(name)
        assert a.n == b.n
        assert a.total == pytest.approx(b.total)
        assert a.total_sq == pytest.approx(b.total_sq)
        assert a.var == pytest.approx(b.var)
    # + makes a new accumulator; merge folds in place
    assert first.requests == 15
    first.merge(second)
    assert first.requests == 40


def test_ranking_moments_only_undefined_values() -> None:
    moments = RankingMoments()
    moments.add({"recall_at_5": None, "ndcg_at_5": math.nan})
    assert moments.requests == 1
    assert moments.moments("recall_at_5").n == 0
    assert moments.mean("recall_at_5") is None
    assert moments.mean("ndcg_at_5") is None
