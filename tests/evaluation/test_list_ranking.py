"""Ranking metrics of a ranker that answers lists of item ids: hand cases, the counting rules of
docs/metrics.md, agreement with the online scoring of one served list, and bad input."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from changeover.domain.ranking_feedback import score_ranking
from changeover.evaluation.list_ranking import (
    answer_keys,
    coverage_incidence,
    judgements_from_lists,
    judgements_from_rows,
    list_metrics,
    overlap_at_k,
    parse_items,
)


def keys(rows: list[list[object]]) -> np.ndarray:
    return answer_keys(np.asarray(rows, dtype=object), "v1")


def test_a_hand_computed_case() -> None:
    # q1: b (relevance 1) at rank 2; e (relevance 2) is relevant but not answered
    # q2: nothing relevant (left out); q3: a at rank 2
    judged = judgements_from_lists(['{"b": 1, "e": 2}', "[]", "a"], query=["q1", "q2", "q3"])
    got = list_metrics(keys([["a", "b", "c", "d"], ["x", "y", "z", "w"], ["e", "a", "c", "d"]]), judged, (2, 10))
    idcg_q1 = 2 + 1 / math.log2(3)  # e then b
    expected_q1 = {"precision_at_2": 0.5, "precision_at_10": 0.25,  # 10 > 4 items: divides by the 4 answered
                   "recall_at_2": 0.5, "recall_at_10": 0.5,
                   "ndcg_at_2": (1 / math.log2(3)) / idcg_q1, "ndcg_at_10": (1 / math.log2(3)) / idcg_q1,
                   "map_at_2": 0.5 / 2, "map_at_10": 0.5 / 2,
                   "hit_rate_at_2": 1.0, "hit_rate_at_10": 1.0, "mrr": 0.5}
    for name, value in expected_q1.items():
        assert got[name][0] == pytest.approx(value), name
        assert math.isnan(got[name][1]), name  # no relevant item: undefined
    assert got["precision_at_2"][2] == 0.5 and got["recall_at_2"][2] == 1.0 and got["mrr"][2] == 0.5
    assert got["ndcg_at_2"][2] == pytest.approx(1 / math.log2(3))


def test_the_two_forms_of_judgements_agree() -> None:
    rows = judgements_from_rows(["u1", "u1", "u1", "u2", "u2"], [10, 11, 12, 10, 13], [1, 0, 2, 0, 1])
    lists = judgements_from_lists(['{"10": 1, "11": 0, "12": 2}', '{"10": 0, "13": 1}'], ["u1", "u2"])
    answers = answer_keys(np.array([[12, 10, 99], [13, 10, 11]]), "v1")
    a, b = list_metrics(answers, rows, (1, 3)), list_metrics(answers, lists, (1, 3))
    for name in a:
        assert a[name] == pytest.approx(b[name]), name
    assert list(rows.first_rows) == [0, 3] and rows.catalogue == {"10", "11", "12", "13"}


def test_ids_match_by_their_text() -> None:
    judged = judgements_from_lists(["[42, 7]"])
    # an INT64 answer against ids read from JSON, and a BYTES answer against the same: one item
    for answer in (np.array([[42, 1]]), np.array([["42", "1"]], dtype=object)):
        assert list_metrics(answer_keys(answer, "v1"), judged, (2,))["recall_at_2"][0] == 0.5


def test_an_empty_list_finds_nothing() -> None:
    judged = judgements_from_lists(["[1, 2]", "[]"])
    got = list_metrics(answer_keys(np.empty((2, 0), dtype=np.int64), "v1"), judged, (5,))
    for name in ("precision_at_5", "recall_at_5", "ndcg_at_5", "map_at_5", "hit_rate_at_5", "mrr"):
        assert got[name][0] == 0.0 and math.isnan(got[name][1]), name


def test_agrees_with_the_online_scoring_of_a_served_list() -> None:
    # domain.ranking_feedback scores one served list against feedback with the same definitions
    rng = random.Random(3)
    checked = 0
    for _ in range(200):
        length = rng.randint(1, 12)
        served = rng.sample(range(30), length)
        relevance = {item: rng.choice([0, 1, 1, 2, 3]) for item in rng.sample(range(30), rng.randint(1, 8))}
        if not any(relevance.values()):
            continue
        ks = sorted({rng.randint(1, 15), rng.randint(1, 15)})
        judged = judgements_from_lists([{str(k): float(v) for k, v in relevance.items()}])
        offline = list_metrics(answer_keys(np.array([served]), "v1"), judged, ks)
        online = score_ranking(served, relevance, ks)
        for k in ks:
            for metric in ("precision", "recall", "ndcg"):
                assert offline[f"{metric}_at_{k}"][0] == pytest.approx(online[f"{metric}_at_{k}"]), (metric, k)
            assert offline[f"hit_rate_at_{k}"][0] == online[f"hit_at_{k}"]
        assert offline["mrr"][0] == pytest.approx(online["mrr"])
        checked += 1
    assert checked > 150


@pytest.mark.parametrize(
    ("cell", "relevance"),
    [
        ("[3, 17, 42]", {"3": 1.0, "17": 1.0, "42": 1.0}),
        ("3 17 42", {"3": 1.0, "17": 1.0, "42": 1.0}),
        ("3,17; 42|9", {"3": 1.0, "17": 1.0, "42": 1.0, "9": 1.0}),
        ('["a", "b", "a"]', {"a": 1.0, "b": 1.0}),  # named twice: counted once
        ('{"a": 2, "b": 0.5}', {"a": 2.0, "b": 0.5}),
        (np.array([5, 6]), {"5": 1.0, "6": 1.0}),  # a Parquet list
        ([7.0], {"7": 1.0}),  # an integral float is an id
        ("", {}),
        (float("nan"), {}),
        (None, {}),
    ],
)
def test_a_relevant_items_cell_reads_as(cell: object, relevance: dict[str, float]) -> None:
    assert parse_items(cell, "row 2") == relevance


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("[1, 2", "row 2: not a JSON list or object"),
        ('{"a": -1}', "the relevance of 'a' must be a number >= 0"),
        ('{"a": "high"}', "the relevance of 'a' must be a number >= 0"),
        ("[1.5]", "item ids are integers or strings, not 1.5"),
        ("[true]", "item ids are integers or strings, not True"),
        (42, "expected a list of item ids"),
    ],
)
def test_a_bad_relevant_items_cell_is_named(cell: object, message: str) -> None:
    with pytest.raises(ValueError, match="row 2") as info:
        parse_items(cell, "row 2")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (np.array([1, 2, 3]), "shape (rows, k), not [3]"),
        (np.array([[0.5, 0.25]]), "item ids are integers or strings, not float64 values"),
        (np.array([[1, 2, 1]]), "row 1 names item '1' twice"),
        (np.array([["a", "b"], ["c", "c"]], dtype=object), "row 2 names item 'c' twice"),
        (np.array([[True, False]]), "not bool values"),
    ],
)
def test_an_answer_that_is_not_a_list_of_ids_is_named(answer: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError) as info:
        answer_keys(answer, "v3")
    assert str(info.value).startswith("v3:") and message in str(info.value)


def test_judgements_that_contradict_themselves_are_refused() -> None:
    with pytest.raises(ValueError, match="query 'u1': item '10' is judged twice"):
        judgements_from_rows(["u1", "u1"], [10, "10"], [1, 0])
    with pytest.raises(ValueError, match="query 'u1' has 2 rows"):
        judgements_from_lists(["[1]", "[2]"], ["u1", "u1"])


def test_coverage_incidence_and_overlap() -> None:
    answers = answer_keys(np.array([[1, 2, 3], [2, 3, 4]]), "v1")
    index = {str(i): i - 1 for i in range(1, 7)}
    top2 = coverage_incidence(answers, 2, index)
    assert top2.shape == (2, 6)
    assert np.asarray(top2.sum(axis=0)).reshape(-1).tolist() == [1, 2, 1, 0, 0, 0]
    other = answer_keys(np.array([[3, 2, 1], [9, 8, 7]]), "v2")
    assert overlap_at_k(answers, other, 3).tolist() == [1.0, 0.0]
    assert overlap_at_k(answers, other, 1).tolist() == [0.0, 0.0]
    empty = answer_keys(np.empty((2, 0), dtype=np.int64), "v1")
    assert overlap_at_k(empty, empty, 5).tolist() == [1.0, 1.0]
