from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from changeover.evaluation.bootstrap import (
    classification_kernel,
    paired_bootstrap,
    percentile_interval,
    ranking_kernel,
    regression_kernel,
    resample_weights,
    weighted_auc,
)
from changeover.evaluation.metrics import (
    classification_metrics_encoded,
    encode_classification,
    regression_metrics,
)
from changeover.evaluation.ranking import per_query_metrics, ranking_metrics


def _binary_case(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # rounded to two decimals: plenty of tied scores
    p1 = np.clip(np.round(0.5 * y + 0.5 * rng.random(n), 2), 0.0, 1.0)
    return y, np.column_stack([1 - p1, p1])


def test_resample_weights_are_counts_of_n_draws() -> None:
    w = resample_weights(50, 7, np.random.default_rng(0))
    assert w.shape == (7, 50)
    assert np.all(w.sum(axis=1) == 50)
    assert np.all(w == np.round(w)) and w.min() >= 0


def test_weighted_auc_matches_sklearn_with_sample_weight() -> None:
    y, proba = _binary_case(0)
    w = resample_weights(len(y), 5, np.random.default_rng(1))
    ours = weighted_auc(proba[:, 1], y == 1, w)
    for i in range(len(w)):
        assert ours[i] == pytest.approx(skm.roc_auc_score(y, proba[:, 1], sample_weight=w[i]))
    # continuous scores take the no-tie path
    s = np.random.default_rng(2).normal(size=len(y)) + y
    assert weighted_auc(s, y == 1, w[:1])[0] == pytest.approx(
        skm.roc_auc_score(y, s, sample_weight=w[0])
    )


def test_classification_kernel_equals_point_metrics_at_unit_and_repeated_weights() -> None:
    y, proba = _binary_case(3)
    enc = encode_classification(y, proba.argmax(axis=1), proba)
    kernel = classification_kernel(enc)
    at_one = kernel(np.ones((1, len(y))))
    point = classification_metrics_encoded(enc)
    assert {k: float(v[0]) for k, v in at_one.items()} == pytest.approx(point)
    # integer weights = the same rows repeated
    w = resample_weights(len(y), 1, np.random.default_rng(4))
    idx = np.repeat(np.arange(len(y)), w[0].astype(int))
    repeated = classification_metrics_encoded(
        encode_classification(y[idx], proba[idx].argmax(axis=1), proba[idx])
    )
    assert {k: float(v[0]) for k, v in kernel(w).items()} == pytest.approx(repeated)


def test_multiclass_kernel_equals_point_metrics() -> None:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=0.05).fit(x[::2], y[::2])
    proba = model.predict_proba(x[1::2])
    enc = encode_classification(y[1::2], model.predict(x[1::2]), proba, model.classes_)
    at_one = classification_kernel(enc)(np.ones((1, len(proba))))
    assert {k: float(v[0]) for k, v in at_one.items()} == pytest.approx(
        classification_metrics_encoded(enc)
    )


def test_regression_kernel_equals_point_metrics() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(10, 3, 200)
    pred = y + rng.normal(0, 1, 200)
    kernel = regression_kernel(y, pred)
    at_one = {k: float(v[0]) for k, v in kernel(np.ones((1, 200))).items()}
    assert at_one == pytest.approx(regression_metrics(y, pred))
    w = resample_weights(200, 1, rng)
    idx = np.repeat(np.arange(200), w[0].astype(int))
    assert {k: float(v[0]) for k, v in kernel(w).items()} == pytest.approx(
        regression_metrics(y[idx], pred[idx])
    )


def test_ranking_kernel_weights_whole_queries() -> None:
    rng = np.random.default_rng(6)
    q = np.repeat(np.arange(40), 6)
    rel = rng.integers(0, 3, len(q))
    scores = rng.normal(size=len(q))
    _, per_query = per_query_metrics(rel, scores, q, ks=(3,))
    kernel = ranking_kernel(per_query)
    at_one = {k: float(v[0]) for k, v in kernel(np.ones((1, 40))).items()}
    assert at_one == pytest.approx(ranking_metrics(rel, scores, q, ks=(3,)))
    # query weights 2, 0, 1, ... = the queries repeated under new ids
    w = resample_weights(40, 1, rng)
    counts = w[0].astype(int)
    rows = [np.flatnonzero(q == i) for i in range(40) for _ in range(counts[i])]
    new_q = np.concatenate([np.full(len(r), j) for j, r in enumerate(rows)])
    idx = np.concatenate(rows)
    expected = ranking_metrics(rel[idx], scores[idx], new_q, ks=(3,))
    assert {k: float(v[0]) for k, v in kernel(w).items()} == pytest.approx(expected)


def test_identical_versions_give_zero_difference() -> None:
    y, proba = _binary_case(7)
    enc = encode_classification(y, proba.argmax(axis=1), proba)
    intervals = paired_bootstrap(
        classification_kernel(enc), classification_kernel(enc), len(y), n_boot=200
    )
    assert set(intervals) >= {"accuracy", "roc_auc", "log_loss", "ece", "f1"}
    for iv in intervals.values():
        assert iv.low == 0.0 and iv.high == 0.0 and iv.contains(0.0)


def test_clearly_better_candidate_excludes_zero() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(size=500)
    champion = regression_kernel(y, y + rng.normal(0, 2.0, 500))
    candidate = regression_kernel(y, y + rng.normal(0, 1.0, 500))
    iv = paired_bootstrap(champion, candidate, 500, n_boot=500, seed=1)
    assert iv["rmse"].high < 0  # lower error: the whole interval below zero
    assert iv["mae"].high < 0
    assert iv["r2"].low > 0


def test_seed_makes_it_reproducible() -> None:
    rng = np.random.default_rng(9)
    y = rng.normal(size=100)
    a, b = regression_kernel(y, y + rng.normal(size=100)), regression_kernel(y, y * 0.9)
    one = paired_bootstrap(a, b, 100, n_boot=100, seed=3)
    two = paired_bootstrap(a, b, 100, n_boot=100, seed=3)
    assert one == two


def test_percentile_interval_and_undefined_resamples() -> None:
    iv = percentile_interval(np.arange(101, dtype=float), 0.9)
    assert (iv.low, iv.high) == pytest.approx((5.0, 95.0))
    # a few undefined resamples are dropped
    some = np.concatenate([np.arange(101, dtype=float), [np.nan] * 10])
    assert percentile_interval(some, 0.9) == iv
    # mostly undefined: no interval
    most = np.concatenate([[1.0, 2.0], [np.nan] * 10])
    assert np.isnan(percentile_interval(most, 0.9).low)


def test_coverage_of_a_null_difference() -> None:
    # two versions with the same true accuracy (0.8), errors independent: diff is 0 in truth.
    # The 90% interval should contain 0 in roughly 90% of datasets.
    rng = np.random.default_rng(10)
    n, trials, covered = 200, 150, 0
    y = np.zeros(n, dtype=int)
    y[: n // 2] = 1
    for t in range(trials):
        a = np.where(rng.random(n) < 0.8, y, 1 - y)
        b = np.where(rng.random(n) < 0.8, y, 1 - y)
        ka = classification_kernel(encode_classification(y, a))
        kb = classification_kernel(encode_classification(y, b))
        covered += paired_bootstrap(ka, kb, n, n_boot=200, confidence=0.9, seed=t)[
            "accuracy"
        ].contains(0.0)
    assert 0.8 <= covered / trials <= 0.97


def test_bad_arguments() -> None:
    k = regression_kernel(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(k, k, 3, confidence=1.5)
