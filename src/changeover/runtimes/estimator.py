"""Serving a scikit-learn-style estimator (shared by the skops and pickle runtimes)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sklearn

from changeover.domain.signature import Signature, TensorSpec, datatype_of
from changeover.runtimes.base import Tensors

INPUT = "input"


def estimator_signature(estimator: Any) -> Signature:
    """Read the signature from ``n_features_in_`` / ``feature_names_in_`` and the estimator type."""
    n_features = int(getattr(estimator, "n_features_in_", -1))
    names = getattr(estimator, "feature_names_in_", None)
    features = tuple(str(n) for n in names) if names is not None else ()
    inputs = (TensorSpec(INPUT, "FP64", (-1, n_features if n_features > 0 else -1)),)
    outputs: list[TensorSpec] = []
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        outputs.append(TensorSpec("label", datatype_of(np.asarray(classes)), (-1,)))
        if hasattr(estimator, "predict_proba"):
            outputs.append(TensorSpec("probabilities", "FP64", (-1, len(classes))))
    else:
        outputs.append(TensorSpec("prediction", "FP64", (-1,)))
    return Signature(inputs=inputs, outputs=tuple(outputs), features=features)


class EstimatorModel:
    inline_ok = True  # library code with a bounded cost: small batches may run on the event loop
    def __init__(self, estimator: Any, signature: Signature) -> None:
        self.estimator = estimator
        self.signature = signature
        self._names = getattr(estimator, "feature_names_in_", None)
        self._proba = any(o.name == "probabilities" for o in signature.outputs)

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        name = self.signature.inputs[0].name if self.signature.inputs else INPUT
        x: Any = np.asarray(inputs[name], dtype=np.float64)
        # inputs seen to be finite here need not be scanned again by scikit-learn's own check, a
        # sixth of a small model's prediction; any others (NaN, which some estimators take as
        # missing, infinity, an overflowing sum) get scikit-learn's checks as always
        finite = math.isfinite(x.sum())
        if self._names is not None:
            import pandas as pd

            x = pd.DataFrame(x, columns=self._names)
        if finite:
            with sklearn.config_context(assume_finite=True):
                return self._predict(x)
        return self._predict(x)

    def _predict(self, x: Any) -> dict[str, np.ndarray]:
        if self._proba:
            proba = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
            labels = np.asarray(self.estimator.classes_)[np.argmax(proba, axis=1)]
            return {"label": labels, "probabilities": proba}
        out_name = self.signature.outputs[0].name if self.signature.outputs else "prediction"
        return {out_name: np.asarray(self.estimator.predict(x))}

    def close(self) -> None:
        self.estimator = None
