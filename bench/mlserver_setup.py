"""MLServer for the benchmarks, in a venv of its own (bench/.venv-mlserver, made on first use):
MLServer 1.7 pins packages that changeover's venv must not be made to share.

MLServer 1.7 with mlserver-sklearn starts only with uvloop<0.20 beside it. The venv holds a
`.gitignore` of `*`, so git never sees it. The model MLServer serves is fitted by the venv's
own Python (`python bench/mlserver_setup.py --fit OUT.joblib`), so its pickle matches the
scikit-learn that loads it; it is the same fit, on the same data, as the skops model the
other servers load (`iris_model`).

    python bench/mlserver_setup.py            # make the venv, print the mlserver binary's path
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-mlserver"
REQUIREMENTS = ("mlserver==1.7.*", "mlserver-sklearn==1.7.*", "uvloop<0.20")


def iris_model(**params: object) -> object:
    """The benchmarks' model: a logistic regression on iris (4 features, 3 classes)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000, **params).fit(x, y)  # type: ignore[arg-type]


def ensure_venv(log: Path | None = None) -> Path:
    """The venv's `mlserver` executable, making the venv first when it is missing."""
    binary = VENV / "bin" / "mlserver"
    if binary.exists():
        (VENV / ".gitignore").write_text("*\n")
        return binary
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        if not (VENV / "bin" / "python").exists():
            subprocess.run(["python3", "-m", "venv", str(VENV)], check=True, stdout=out, stderr=out, timeout=300)
        (VENV / ".gitignore").write_text("*\n")
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *REQUIREMENTS], check=True, stdout=out,
                       stderr=out, timeout=1800)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    if not binary.exists():
        raise RuntimeError(f"pip installed no {binary}")
    return binary


def write_model_folder(folder: Path, *, http_port: int, grpc_port: int) -> Path:
    """settings.json and model-settings.json for `mlserver start FOLDER`, and the model.

    parallel_workers 0: inference runs in the one server process, on its event loop, as
    changeover (one process, predictions off the loop in threads) and the bare app (one
    process) do; with 1 or more, every request would cross a process boundary to a worker,
    which costs more than this model's microseconds of predict. Metrics are off (no third
    port, no Prometheus middleware): changeover's are on, so MLServer is favoured if anything.
    """
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(VENV / "bin" / "python"), __file__, "--fit", str(folder / "model.joblib")], check=True,
                   timeout=300)
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "parallel_workers": 0,
        "metrics_endpoint": None,
        "debug": False,
        "load_models_at_startup": True,
    }))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }))
    return folder


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--fit":  # run by the MLServer venv's python
        import joblib

        joblib.dump(iris_model(), sys.argv[2])
        return
    print(ensure_venv())


if __name__ == "__main__":
    main()
