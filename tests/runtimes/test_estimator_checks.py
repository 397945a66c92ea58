"""The estimator runtime skips scikit-learn's finiteness scan only for inputs it has seen to
be finite: answers are the estimator's own, and non-finite inputs meet scikit-learn's checks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from changeover.runtimes.estimator import EstimatorModel, estimator_signature

X, Y = load_iris(return_X_y=True)


def served(estimator: object) -> EstimatorModel:
    return EstimatorModel(estimator, estimator_signature(estimator))


def test_finite_inputs_get_the_estimators_own_answers() -> None:
    model = LogisticRegression(max_iter=500).fit(X, Y)
    out = served(model).predict({"input": X[:20]})
    np.testing.assert_array_equal(out["probabilities"], model.predict_proba(X[:20]))
    np.testing.assert_array_equal(out["label"], model.predict(X[:20]))


def test_nan_meets_scikit_learns_check_where_the_estimator_refuses_it() -> None:
    x = X[:3].copy()
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        served(LogisticRegression(max_iter=500).fit(X, Y)).predict({"input": x})
    with pytest.raises(ValueError, match="infinity|too large"):
        served(LogisticRegression(max_iter=500).fit(X, Y)).predict({"input": np.where(np.isnan(x), np.inf, x)})


def test_nan_is_taken_as_missing_where_the_estimator_allows_it() -> None:
    model = HistGradientBoostingClassifier(max_iter=20).fit(X, Y)
    x = X[:3].copy()
    x[0, 0] = np.nan
    out = served(model).predict({"input": x})
    np.testing.assert_array_equal(out["probabilities"], model.predict_proba(x))
