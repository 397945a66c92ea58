"""Two versions of a classifier for the README's quick tour, and the data to gate them on.

Writes into the current folder (or the one given): ``model-v1.skops`` (a logistic regression
regularised hard), ``model-v2.skops`` (the same, regularised less: a little better) and
``holdout.csv`` (rows neither saw, columns f0..f29 and label), from scikit-learn's breast
cancer data. Run: ``python examples/cancer/train.py [FOLDER]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import skops.io as sio
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main(folder: Path) -> None:
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.4, random_state=0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, c in (("model-v1.skops", 0.01), ("model-v2.skops", 1.0)):
        sio.dump(make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000)).fit(x_train, y_train),
                 folder / name)
    holdout = pd.DataFrame(x_test, columns=[f"f{i}" for i in range(x_test.shape[1])])
    holdout["label"] = y_test
    holdout.to_csv(folder / "holdout.csv", index=False)
    print(f"wrote model-v1.skops, model-v2.skops and holdout.csv ({len(holdout)} rows) in {folder.resolve()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
