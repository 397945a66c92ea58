"""Model artifacts made by the tests, from data sets scikit-learn ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    data = load_breast_cancer()
    return data.data.astype(np.float64), data.target


def skops_classifiers(folder: Path) -> tuple[Path, Path]:
    """Two different classifiers on the same 30 features: a logistic regression and a tree."""
    import skops.io as sio

    x, y = breast_cancer()
    folder.mkdir(parents=True, exist_ok=True)
    one = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    two = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    p1, p2 = folder / "v1.skops", folder / "v2.skops"
    sio.dump(one, p1)
    sio.dump(two, p2)
    return p1, p2


def python_model(folder: Path, body: str, *, inputs: str = "[{name: x, datatype: FP64, shape: [-1, 2]}]",
                 outputs: str = "[{name: y, datatype: FP64, shape: [-1]}]") -> Path:
    """A python-runtime folder whose predictor's predict() body is given."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.yaml").write_text(
        f"runtime: python\npredictor: predictor:Model\ninputs: {inputs}\noutputs: {outputs}\n"
    )
    (folder / "predictor.py").write_text(
        "import time\nimport numpy as np\n\n\nclass Model:\n    def load(self, folder):\n        self.folder = folder\n\n"
        "    def predict(self, inputs):\n" + "".join(f"        {line}\n" for line in body.splitlines())
    )
    return folder


def v2_request(x: np.ndarray, name: str = "input", datatype: str = "FP64") -> dict:
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.reshape(-1).tolist()}]}


def onnx_mlp(path: Path, hidden: tuple[int, ...] = (64, 64)) -> Path:
    """An MLP classifier on the 30 breast-cancer features as ONNX (skl2onnx), FP32 in, a label
    and the probabilities as tensors out (no ZipMap). A few epochs only: the tests need its
    answers, not its accuracy; the bench a cost per call (bigger ``hidden``: more per row)."""
    import warnings

    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = breast_cancer()
    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=hidden, max_iter=3, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x.astype(np.float32), y)
    onx = convert_sklearn(model, initial_types=[("features", FloatTensorType([None, 30]))],
                          options={MLPClassifier: {"zipmap": False}}, target_opset=17)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onx.SerializeToString())
    return path
