from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from changeover.evaluation.data import DataError
from changeover.evaluation.gate import PredictionBatch, PredictionError, Predictor, run_gate
from changeover.evaluation.metrics import LATENCY_METRICS
from changeover.evaluation.rules import RulesError

FAST: dict[str, Any] = {"n_boot": 200, "batch_size": 64}


def classifier(model: Any, with_proba: bool = True) -> Predictor:
    def predict(batch: pd.DataFrame) -> PredictionBatch:
        x = batch.to_numpy()
        if not with_proba:
            return PredictionBatch(values=model.predict(x))
        return PredictionBatch(model.predict(x), model.predict_proba(x), model.classes_)

    return predict


def regressor(model: Any) -> Predictor:
    return lambda batch: PredictionBatch(values=model.predict(batch.to_numpy()))


def breast_cancer() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = load_breast_cancer(as_frame=True).frame
    return data.iloc[:250], data.iloc[250:]


def fitted(model: Any, train: pd.DataFrame, target: str = "target") -> Any:
    return model.fit(train.drop(columns=[target]).to_numpy(), train[target])


def lr() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression())


def test_classification_gate_end_to_end() -> None:
    train, test = breast_cancer()
    good, dummy = fitted(lr(), train), fitted(DummyClassifier(), train)
    stages: list[tuple[str, float]] = []
    result = run_gate(
        task="classification",
        data=test,
        target="target",
        champion=classifier(dummy),
        candidate=classifier(good),
        require={
            "accuracy": {"min": 0.9, "better_than": "champion"},
            "log_loss": {"not_worse_than": "champion", "margin": 0.01},
            "latency_p99_ms": {"max": 10_000},
        },
        progress=lambda stage, f: stages.append((stage, f)),
        **FAST,
    )
    assert result.verdict == "pass", [r.reason for r in result.rules]
    assert len(result.rules) == 4 and all(r.passed for r in result.rules)
    assert result.n_rows == len(test)
    acc = result.metrics["accuracy"]
    assert acc.champion is not None
    assert acc.diff == pytest.approx(acc.candidate - acc.champion)
    assert acc.ci_low is not None and acc.ci_low > 0
    assert set(LATENCY_METRICS) <= set(result.metrics)
    assert {"roc_auc", "log_loss", "ece"} <= set(result.metrics)
    assert len(result.batch_rows) == int(np.ceil(len(test) / 64))
    assert result.batch_seconds["candidate"].shape == result.batch_rows.shape
    assert result.latency["candidate"].rows_per_second > 0
    assert stages[-1] == ("done", 1.0)
    assert {s for s, _ in stages} == {"predict", "metrics", "bootstrap", "done"}
    payload = json.dumps(result.to_dict(), allow_nan=False)
    summary = json.loads(payload)
    assert summary["verdict"] == "pass"
    assert summary["metrics"]["accuracy"]["higher_is_better"] is True
    diffs = summary["prediction_differences"]
    assert 0 <= diffs["label_agreement"] <= 1
    assert sum(diffs["histogram"]["counts"]) == len(test)
    assert len(payload) < 20_000  # no per-row arrays


def test_identical_versions_differ_by_nothing() -> None:
    train, test = breast_cancer()
    predict = classifier(fitted(lr(), train))
    result = run_gate(
        task="classification",
        data=test,
        target="target",
        champion=predict,
        candidate=predict,
        require={"f1": {"not_worse_than": "champion"}, "roc_auc": {"better_than": "champion"}},
        **FAST,
    )
    for name in ("accuracy", "f1", "roc_auc", "log_loss", "ece"):
        m = result.metrics[name]
        assert m.diff == 0.0 and m.ci_low == 0.0 and m.ci_high == 0.0
    # not worse by a margin of 0: passes; better: cannot pass
    assert [r.passed for r in result.rules] == [True, False]
    assert result.verdict == "fail"


def test_worse_candidate_fails_not_worse_than() -> None:
    train, test = breast_cancer()
    result = run_gate(
        task="classification",
        data=test,
        target="target",
        champion=classifier(fitted(lr(), train)),
        candidate=classifier(fitted(DummyClassifier(), train)),
        require={"roc_auc": {"not_worse_than": "champion", "margin": 0.01}},
        **FAST,
    )
    assert result.verdict == "fail"
    assert "worse than the champion by more than 0.01" in result.rules[0].reason


def test_first_version_only_absolute_rules() -> None:
    train, test = breast_cancer()
    result = run_gate(
        task="classification",
        data=test,
        target="target",
        champion=None,
        candidate=classifier(fitted(lr(), train)),
        require={"accuracy": {"min": 0.8, "not_worse_than": "champion"}},
        **FAST,
    )
    assert [r.passed for r in result.rules] == [True, False]
    assert "no champion" in result.rules[1].reason
    assert result.metrics["accuracy"].champion is None
    assert set(result.latency) == {"candidate"}
    assert result.to_dict()["prediction_differences"] is None


def test_versions_run_interleaved_on_the_same_batches() -> None:
    train, test = breast_cancer()
    model = fitted(lr(), train)
    calls: list[tuple[str, int]] = []

    def recording(name: str) -> Predictor:
        def predict(batch: pd.DataFrame) -> PredictionBatch:
            calls.append((name, int(batch.index[0])))
            return classifier(model)(batch)

        return predict

    run_gate(
        task="classification",
        data=test.iloc[:200],
        target="target",
        champion=recording("A"),
        candidate=recording("B"),
        require={},
        batch_size=50,
        n_boot=20,
    )
    first = int(test.index[0])
    starts = [first + i for i in (0, 50, 100, 150)]
    # a warm-up call each on the first batch, then A B, B A, A B, B A
    expected = [("A", first), ("B", first)]
    for i, s in enumerate(starts):
        pair = [("A", s), ("B", s)]
        expected += pair if i % 2 == 0 else pair[::-1]
    assert calls == expected


def test_multiclass_gate_and_missing_proba() -> None:
    data = load_iris(as_frame=True).frame.sample(frac=1.0, random_state=0)
    train, test = data.iloc[:60], data.iloc[60:]
    model = fitted(lr(), train)
    result = run_gate(
        task="classification",
        data=test,
        target="target",
        champion=classifier(model),
        candidate=classifier(model, with_proba=False),
        require={"roc_auc": {"not_worse_than": "champion"}, "f1": {"min": 0.5}},
        **FAST,
    )
    assert "roc_auc" not in result.metrics
    assert not result.rules[0].passed and "probabilities" in result.rules[0].reason
    assert result.rules[1].passed
    json.dumps(result.to_dict(), allow_nan=False)


def test_regression_gate() -> None:
    data = load_diabetes(as_frame=True).frame
    train, test = data.iloc[:300], data.iloc[300:]
    result = run_gate(
        task="regression",
        data=test,
        target="target",
        champion=regressor(fitted(DummyRegressor(), train)),
        candidate=regressor(fitted(Ridge(alpha=0.1), train)),
        require={"rmse": {"better_than": "champion"}, "r2": {"min": 0.2}},
        **FAST,
    )
    assert result.verdict == "pass", [r.reason for r in result.rules]
    rmse = result.metrics["rmse"]
    assert not rmse.higher_is_better and rmse.ci_high is not None and rmse.ci_high < 0
    d = result.to_dict()["prediction_differences"]
    assert d["quantiles"]["0"] <= d["quantiles"]["0.5"] <= d["quantiles"]["1"]


def ranking_data(n_queries: int = 60, per_query: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = n_queries * per_query
    x = rng.normal(size=(n, 3))
    relevance = np.clip(np.round(x[:, 0] + 0.3 * rng.normal(size=n)), 0, 3)
    frame = pd.DataFrame(x, columns=["f0", "f1", "f2"])
    return frame.assign(qid=np.repeat(np.arange(n_queries), per_query), rel=relevance)


def test_ranking_gate_resamples_queries_and_adds_rule_ks() -> None:
    data = ranking_data()
    result = run_gate(
        task="ranking",
        data=data,
        target="rel",
        query_column="qid",
        champion=lambda b: PredictionBatch(values=b["f2"].to_numpy()),  # noise
        candidate=lambda b: PredictionBatch(values=b["f0"].to_numpy()),  # signal
        require={"ndcg_at_3": {"better_than": "champion"}, "mrr": {"min": 0.5}},
        **FAST,
    )
    assert result.ks == (3, 5, 10)
    assert result.n_queries == 60
    assert {"ndcg_at_3", "precision_at_5", "map_at_10", "mrr"} <= set(result.metrics)
    assert result.verdict == "pass", [r.reason for r in result.rules]
    assert result.per_query["candidate"]["ndcg_at_3"].shape == (60,)


def test_rules_checked_before_any_prediction() -> None:
    def never(batch: pd.DataFrame) -> PredictionBatch:
        raise AssertionError("the predictor must not run")

    _, test = breast_cancer()
    with pytest.raises(RulesError, match="acurracy"):
        run_gate(
            task="classification",
            data=test,
            target="target",
            champion=never,
            candidate=never,
            require={"acurracy": {"min": 0.9}},
        )
    with pytest.raises(DataError, match="'label' is missing"):
        run_gate(
            task="classification",
            data=test,
            target="label",
            champion=never,
            candidate=never,
            require={"accuracy": {"min": 0.9}},
        )


@pytest.mark.parametrize(
    ("task", "bad", "match"),
    [
        ("regression", lambda b: PredictionBatch(values=np.zeros(len(b) - 1)), "predictions for"),
        (
            "regression",
            lambda b: PredictionBatch(values=np.full(len(b), np.nan)),
            "NaN or infinite",
        ),
        ("regression", lambda b: np.zeros(len(b)), "must return a PredictionBatch"),
        (
            "classification",
            lambda b: PredictionBatch(
                np.zeros(len(b)), np.full((len(b), 2), 0.8), np.array([0, 1])
            ),
            "sum to 1",
        ),
        (
            "classification",
            lambda b: PredictionBatch(
                np.zeros(len(b)), np.full((len(b), 3), 1 / 3), np.array([0, 1])
            ),
            "3 columns for 2 classes",
        ),
        (
            "classification",
            lambda b: PredictionBatch(np.array(["x"] * len(b))),
            "labels or classes do not match",
        ),
    ],
)
def test_bad_predictions_raise_prediction_error(task: str, bad: Any, match: str) -> None:
    data = load_breast_cancer(as_frame=True).frame.iloc[:100]
    with pytest.raises(PredictionError, match=f"candidate: .*{match}"):
        run_gate(
            task=task,
            data=data,
            target="target",
            champion=None,
            candidate=bad,
            require={},
            n_boot=10,
        )


def test_string_labels() -> None:
    train, test = breast_cancer()
    names = {0: "malignant", 1: "benign"}
    train = train.assign(target=train["target"].map(names))
    test = test.assign(target=test["target"].map(names))
    model = fitted(lr(), train)
    result = run_gate(
        task="classification",
        data=test,
        target="target",
        champion=classifier(fitted(DummyClassifier(), train)),
        candidate=classifier(model),
        require={"roc_auc": {"better_than": "champion"}},
        **FAST,
    )
    assert result.verdict == "pass"
    # positive class is "malignant" (the larger label): recall is about malignant rows
    y = test["target"].to_numpy()
    pred = model.predict(test.drop(columns="target").to_numpy())
    malignant = y == "malignant"
    expected = float(np.mean(pred[malignant] == "malignant"))
    assert result.metrics["recall"].candidate == pytest.approx(expected)
