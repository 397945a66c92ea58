from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from changeover.evaluation.metrics import (
    LATENCY_METRICS,
    classification_metrics,
    expected_calibration_error,
    higher_is_better,
    is_known_metric,
    metric_names,
    regression_metrics,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("accuracy", True),
        ("precision", True),
        ("recall", True),
        ("f1", True),
        ("roc_auc", True),
        ("log_loss", False),
        ("ece", False),
        ("rmse", False),
        ("mae", False),
        ("r2", True),
        ("mape", False),
        ("ndcg_at_10", True),
        ("precision_at_3", True),
        ("recall_at_7", True),
        ("map_at_5", True),
        ("hit_rate_at_10", True),
        ("coverage_at_10", True),
        ("mrr", True),
        ("latency_p50_ms", False),
        ("latency_p99_ms", False),
        ("batch_latency_p95_ms", False),
        ("throughput_rows_per_s", True),
    ],
)
def test_direction_table(name: str, expected: bool) -> None:
    assert higher_is_better(name) is expected


@pytest.mark.parametrize("name", ["auc", "ndcg_at_0", "ndcg@10", "latency_p90_ms", ""])
def test_unknown_metric_names(name: str) -> None:
    assert not is_known_metric(name)
    with pytest.raises(ValueError, match="unknown metric"):
        higher_is_better(name)


def test_metric_names_per_task() -> None:
    assert metric_names("regression", with_latency=False) == ["rmse", "mae", "r2", "mape"]
    ranking = metric_names("ranking", ks=(3,), with_latency=False)
    assert ranking == ["precision_at_3", "recall_at_3", "ndcg_at_3", "map_at_3", "hit_rate_at_3", "coverage_at_3", "mrr"]
    cls = metric_names("classification", with_proba=False)
    assert "roc_auc" not in cls and set(LATENCY_METRICS) <= set(cls)
    with pytest.raises(ValueError, match="unknown task"):
        metric_names("clustering")


def test_binary_hand_case_positive_is_larger_label() -> None:
    # positive class is "yes" (> "no"): TP = row 1, FP = row 0, FN = row 2
    y_true = np.array(["no", "yes", "yes", "no"])
    y_pred = np.array(["yes", "yes", "no", "no"])
    m = classification_metrics(y_true, y_pred)
    assert m == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    # with labels 2 and 5, 5 is positive: TP = 1 (row 0), FP = 0, FN = 1 (row 2)
    m = classification_metrics(np.array([5, 2, 5]), np.array([5, 2, 2]))
    assert m["precision"] == 1.0
    assert m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # 2PR / (P + R) = 2/3


def test_binary_matches_sklearn_on_breast_cancer() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x[:300], y[:300])
    pred, proba = model.predict(x[300:]), model.predict_proba(x[300:])
    m = classification_metrics(y[300:], pred, proba, model.classes_)
    yt = y[300:]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(yt, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(yt, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(yt, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(yt, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(yt, proba[:, 1]))
    assert m["log_loss"] == pytest.approx(skm.log_loss(yt, proba))
    assert 0.0 <= m["ece"] <= 1.0


def test_multiclass_matches_sklearn_macro_and_ovr() -> None:
    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    train, test = idx[:60], idx[60:]
    model = LogisticRegression(max_iter=5000, C=0.05).fit(x[train], y[train])
    pred, proba = model.predict(x[test]), model.predict_proba(x[test])
    m = classification_metrics(y[test], pred, proba, model.classes_)
    for name, fn in [
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ]:
        assert m[name] == pytest.approx(fn(y[test], pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y[test], proba, multi_class="ovr"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y[test], proba))


def test_proba_columns_follow_classes() -> None:
    y = np.array([0, 1, 1, 0, 1])
    p1 = np.array([0.2, 0.7, 0.6, 0.4, 0.9])
    proba = np.column_stack([1 - p1, p1])
    a = classification_metrics(y, p1 > 0.5, proba, classes=np.array([0, 1]))
    b = classification_metrics(y, p1 > 0.5, proba[:, ::-1], classes=np.array([1, 0]))
    assert a == pytest.approx(b)
    # no classes: columns follow the target's sorted labels
    assert classification_metrics(y, p1 > 0.5, proba) == pytest.approx(a)


def test_model_with_more_classes_than_target() -> None:
    # the model knows class 2, the evaluation target only 0 and 1: binary metrics on 0/1
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.1, 0.4]])
    m = classification_metrics(y, np.array([0, 1, 2, 0]), proba, classes=np.array([0, 1, 2]))
    # label 2 is not in the target: row 2 is a false negative; TP=1, FP=0, FN=1
    assert m["accuracy"] == 0.75
    assert m["precision"] == 1.0
    assert m["recall"] == 0.5
    expected = skm.log_loss(y, proba, labels=[0, 1, 2])
    assert m["log_loss"] == pytest.approx(expected)


def test_target_label_missing_from_model_gets_zero_probability() -> None:
    y = np.array(["a", "b", "c"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    m = classification_metrics(y, np.array(["a", "b", "a"]), proba, classes=np.array(["a", "b"]))
    eps = np.finfo(np.float64).eps
    # row 2's true class "c" has p = 0, clipped to eps
    expected = -(np.log(0.9) + np.log(0.8) + np.log(eps)) / 3
    assert m["log_loss"] == pytest.approx(expected)


def test_proba_metrics_omitted_without_proba() -> None:
    m = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]))
    assert set(m) == {"accuracy", "precision", "recall", "f1"}


def test_ece_hand_case() -> None:
    proba = np.array([[0.95, 0.05], [0.85, 0.15], [0.2, 0.8], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    # confidences 0.95 (right, bin 9), 0.85 (wrong, bin 8), 0.8 (right, bin 8), 0.6 (right, bin 6)
    # bin 9: |1 - 0.95| = 0.05, weight 1/4
    # bin 8: accuracy 1/2, mean confidence 0.825, |0.5 - 0.825| = 0.325, weight 2/4
    # bin 6: |1 - 0.6| = 0.4, weight 1/4
    # ECE = 0.05/4 + 0.325/2 + 0.4/4 = 0.275
    assert expected_calibration_error(y, proba) == pytest.approx(0.275)


def test_ece_confidence_one_goes_to_last_bin_and_perfect_is_zero() -> None:
    proba = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(np.array([0, 1]), proba) == 0.0
    # always 0.5 and right half the time: perfectly calibrated
    half = np.full((4, 2), 0.5)
    assert expected_calibration_error(np.array([0, 0, 1, 1]), half) == 0.0


def test_regression_matches_sklearn_and_hand_mape() -> None:
    x, y = load_diabetes(return_X_y=True)
    pred = Ridge().fit(x[:300], y[:300]).predict(x[300:])
    m = regression_metrics(y[300:], pred)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((y[300:] - pred) ** 2)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y[300:], pred))
    assert m["r2"] == pytest.approx(skm.r2_score(y[300:], pred))
    # |100-110|/100 = 0.1, |200-150|/200 = 0.25 -> mean 0.175
    assert regression_metrics([100, 200], [110, 150])["mape"] == pytest.approx(0.175)
