from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from changeover.evaluation.ranking import (
    map_at_k,
    mean_over_queries,
    mrr,
    ndcg_at_k,
    per_query_metrics,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

# One query of five rows; by score the order is rows 0, 1, 2, 3, 4.
# Relevant rows are at ranks 1 and 3.
REL = [1, 0, 1, 0, 0]
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5]
ONE_QUERY = ["q"] * 5


def test_precision_recall_hand_case() -> None:
    # top 3 holds 2 relevant rows: precision@3 = 2/3, recall@3 = 2/2
    assert precision_at_k(REL, SCORES, ONE_QUERY, 3)[0] == pytest.approx(2 / 3)
    assert recall_at_k(REL, SCORES, ONE_QUERY, 3)[0] == 1.0
    # top 1 holds 1 relevant row: precision@1 = 1, recall@1 = 1/2
    assert precision_at_k(REL, SCORES, ONE_QUERY, 1)[0] == 1.0
    assert recall_at_k(REL, SCORES, ONE_QUERY, 1)[0] == 0.5
    # top 2: 1 relevant of 2 shown
    assert precision_at_k(REL, SCORES, ONE_QUERY, 2)[0] == 0.5


def test_ndcg_hand_case() -> None:
    # DCG@3 = 1/log2(2) + 0/log2(3) + 1/log2(4) = 1 + 0.5 = 1.5
    # ideal order puts both relevant rows first: IDCG@3 = 1/log2(2) + 1/log2(3) = 1.63093
    expected = 1.5 / (1 + 1 / math.log2(3))
    assert ndcg_at_k(REL, SCORES, ONE_QUERY, 3)[0] == pytest.approx(expected)


def test_graded_ndcg_hand_case() -> None:
    # order by score: relevance 1, 3, 0; ideal: 3, 1, 0
    # DCG@2 = 1/1 + 3/log2(3) = 2.89279; IDCG@2 = 3/1 + 1/log2(3) = 3.63093
    rel, scores = [1, 3, 0], [0.9, 0.5, 0.1]
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert ndcg_at_k(rel, scores, ["q"] * 3, 2)[0] == pytest.approx(expected)


def test_map_and_mrr_hand_case() -> None:
    # relevant at ranks 1 and 3: precision@1 = 1, precision@3 = 2/3
    # AP@3 = (1 + 2/3) / min(3, 2) = 0.83333
    assert map_at_k(REL, SCORES, ONE_QUERY, 3)[0] == pytest.approx((1 + 2 / 3) / 2)
    # AP@2 = 1 / min(2, 2) = 0.5 (the second relevant row is past the cut-off)
    assert map_at_k(REL, SCORES, ONE_QUERY, 2)[0] == pytest.approx(0.5)
    assert mrr(REL, SCORES, ONE_QUERY)[0] == 1.0
    # first relevant row at rank 2 -> reciprocal rank 1/2
    assert mrr([0, 1, 0], [0.9, 0.8, 0.7], ["q"] * 3)[0] == 0.5


def test_fewer_items_than_k_divides_by_items_shown() -> None:
    rel, scores, q = [1, 0, 1], [0.9, 0.8, 0.7], ["q"] * 3
    # 3 rows, k = 5: precision = 2 relevant / 3 shown
    assert precision_at_k(rel, scores, q, 5)[0] == pytest.approx(2 / 3)
    assert recall_at_k(rel, scores, q, 5)[0] == 1.0
    # AP@5 = (1/1 + 2/3) / min(5, 2)
    assert map_at_k(rel, scores, q, 5)[0] == pytest.approx((1 + 2 / 3) / 2)
    # a perfect ranking of a short list scores 1 on NDCG and AP
    assert ndcg_at_k([1, 1, 0], scores, q, 5)[0] == pytest.approx(1.0)
    assert map_at_k([1, 1, 0], scores, q, 5)[0] == pytest.approx(1.0)


def test_query_without_relevant_item_is_left_out() -> None:
    # query a: AP@2 = 1 (relevant at rank 1); query b: relevant at rank 2, AP@2 = (1/2) / 1
    # query c: no relevant row -> NaN, not in the mean: MAP@2 = (1 + 0.5) / 2 = 0.75
    rel = [1, 0, 0, 1, 0, 0]
    scores = [0.9, 0.1, 0.9, 0.5, 0.3, 0.2]
    q = ["a", "a", "b", "b", "c", "c"]
    ids, per_query = per_query_metrics(rel, scores, q, ks=(2,))
    assert list(ids) == ["a", "b", "c"]
    ap = per_query["map_at_2"]
    assert ap[:2] == pytest.approx([1.0, 0.5])
    assert np.isnan(ap[2])
    for values in per_query.values():
        assert np.isnan(values[2])
    assert ranking_metrics(rel, scores, q, ks=(2,))["map_at_2"] == pytest.approx(0.75)
    assert ranking_metrics(rel, scores, q, ks=(2,))["mrr"] == pytest.approx(0.75)


def test_ties_are_resolved_against_the_model() -> None:
    # three tied rows, one relevant: the relevant row is placed last
    rel, scores, q = [1, 0, 0], [0.5, 0.5, 0.5], ["q"] * 3
    assert mrr(rel, scores, q)[0] == pytest.approx(1 / 3)
    assert precision_at_k(rel, scores, q, 1)[0] == 0.0
    # sklearn averages over tied orders: never below ours
    ours = ndcg_at_k(rel, scores, q, 2)[0]
    theirs = ndcg_score([rel], [scores], k=2)
    assert ours == 0.0  # relevant row at rank 3, past k = 2
    assert theirs >= ours


def test_metrics_do_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(1)
    n = 200
    q = rng.integers(0, 20, n)
    rel = rng.integers(0, 3, n)
    scores = rng.integers(0, 4, n).astype(float)  # many ties on purpose
    a = ranking_metrics(rel, scores, q, ks=(3, 5))
    perm = rng.permutation(n)
    b = ranking_metrics(rel[perm], scores[perm], q[perm], ks=(3, 5))
    assert a == pytest.approx(b)


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_ndcg_agrees_with_sklearn_without_ties(k: int) -> None:
    rng = np.random.default_rng(k)
    n_queries, per_query = 30, 8
    rel = rng.integers(0, 4, size=(n_queries, per_query))
    rel[0] = 0  # a query with no relevant row: sklearn scores it 0, we leave it out
    scores = rng.normal(size=(n_queries, per_query))  # continuous: no ties
    q = np.repeat(np.arange(n_queries), per_query)
    ours = ndcg_at_k(rel.ravel(), scores.ravel(), q, k)
    theirs = ndcg_score(rel[1:], scores[1:], k=k)
    assert mean_over_queries(ours) == pytest.approx(theirs)
    assert np.isnan(ours[0])


def test_perfect_and_reversed_rankings() -> None:
    rel = [3, 2, 1, 0, 0]
    q = ["q"] * 5
    best = ranking_metrics(rel, [5, 4, 3, 2, 1], q, ks=(3,))
    assert best["ndcg_at_3"] == pytest.approx(1.0)
    assert best["map_at_3"] == pytest.approx(1.0)
    assert best["precision_at_3"] == pytest.approx(1.0)
    worst = ranking_metrics(rel, [1, 2, 3, 4, 5], q, ks=(3,))
    # relevant rows at ranks 3, 4, 5: precision@3 = 1/3, MRR = 1/3
    assert worst["precision_at_3"] == pytest.approx(1 / 3)
    assert worst["mrr"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("rel", "scores", "match"),
    [
        ([1, 0], [0.5, float("nan")], "NaN"),
        ([-1, 0], [0.5, 0.4], ">= 0"),
        ([1, 0, 1], [0.5, 0.4], "same length"),
    ],
)
def test_bad_inputs_raise(rel: list[float], scores: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ranking_metrics(rel, scores, ["q"] * len(rel))


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        precision_at_k(REL, SCORES, ONE_QUERY, 0)
