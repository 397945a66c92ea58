"""Drift of served traffic against a version's reference profile: recorded requests drawn
from the reference raise no drift; a clear shift does, on the shifted input only."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from monhelpers import add_request, add_window, push

from changeover.domain.signature import Signature, TensorSpec
from changeover.monitoring.drift_monitor import (
    current_drift,
    drift_history,
    expected_columns,
    recorded_columns,
    set_reference_profile,
    tensor_columns,
)
from changeover.store.store import Store

MEANS, SDS = np.array([40.0, 3.0]), np.array([12.0, 0.7])


def reference(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame({"age": rng.normal(MEANS[0], SDS[0], n), "income": rng.normal(MEANS[1], SDS[1], n)})


def serve(store: Store, version: int, rng: np.random.Generator, *, requests: int, rows: int, shift: float = 0.0,
          pred_shift: float = 0.0) -> None:
    now = time.time()
    for i in range(requests):
        x = rng.normal(MEANS, SDS, (rows, 2))
        x[:, 1] += shift * SDS[1]
        add_request(store, "m", version, now - 30 + i * 0.1, output={"label": 1}, x=x.tolist())
    add_window(store, "m", version, now - 60, now - 1, requests=requests * rows,
               predictions=list(rng.beta(2, 5, 400) + pred_shift))


@pytest.mark.parametrize(
    ("shape", "names"),
    [((5,), ["x"]), ((5, 1), ["x"]), ((5, 3), ["x[0]", "x[1]", "x[2]"]), ((5, 2, 2), ["x[0]", "x[1]", "x[2]", "x[3]"])],
)
def test_tensor_columns(shape: tuple[int, ...], names: list[str]) -> None:
    columns = tensor_columns("x", np.zeros(shape))
    assert list(columns) == names and all(c.shape == (5,) for c in columns.values())


def test_expected_columns_follow_the_signature() -> None:
    sig = Signature(inputs=(TensorSpec("x", "FP32", (-1, 3)), TensorSpec("country", "BYTES", (-1,))),
                    outputs=(TensorSpec("y", "FP32", (-1,)),))
    assert expected_columns(sig) == ["x[0]", "x[1]", "x[2]", "country"]


def test_recorded_columns_stack_requests() -> None:
    rows: list[dict[str, Any]] = [
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [1, 2, 3, 4]}]},
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [5, None]}]},
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3, 2], "data": [1]}]},  # malformed: left out
        {"inputs": None},
    ]
    columns = recorded_columns(rows)
    assert columns["x[0]"].tolist() == [1, 3, 5]
    assert columns["x[1]"][:2].tolist() == [2, 4] and np.isnan(columns["x[1]"][2])


def test_profile_from_a_named_feature_table(store: Store) -> None:
    push(store, "m", 1)
    rng = np.random.default_rng(0)
    profile = set_reference_profile(store, "m", "1", reference(rng, 800), rng.beta(2, 5, 800))
    assert sorted(profile["columns"]) == ["x[0]", "x[1]"]
    assert profile["feature_names"] == {"x[0]": "age", "x[1]": "income"}
    stored = store.version("m", 1).profile
    assert stored is not None and stored["prediction"]["kind"] == "numeric"
    assert any(e["kind"] == "profile" for e in store.events("m"))


def test_no_profile_says_so(store: Store) -> None:
    record = push(store, "m", 1)
    report = current_drift(store, record, window_s=3600)
    assert report["available"] is False and "no reference profile" in report["reason"]


def test_traffic_like_the_reference_does_not_drift(store: Store) -> None:
    push(store, "m", 1)
    rng = np.random.default_rng(1)
    set_reference_profile(store, "m", 1, reference(rng, 800), rng.beta(2, 5, 800))
    serve(store, 1, rng, requests=60, rows=5)
    report = current_drift(store, store.version("m", 1), window_s=3600)
    assert report["available"] and report["n_requests"] == 60 and report["n_predictions"] == 400
    assert not report["drifted_any"], report["columns"]
    assert report["drift_share"] == 0.0 and report["reason"] is None
    assert {c["name"]: c["test"] for c in report["columns"]} == {"x[0]": "ks", "x[1]": "ks", "prediction": "ks"}
    assert report["columns"][1]["feature"] == "income"


def test_a_clear_shift_drifts(store: Store) -> None:
    push(store, "m", 1)
    rng = np.random.default_rng(2)
    set_reference_profile(store, "m", 1, reference(rng, 800), rng.beta(2, 5, 800))
    serve(store, 1, rng, requests=60, rows=5, shift=1.0, pred_shift=0.2)
    report = current_drift(store, store.version("m", 1), window_s=3600)
    drifted = {c["name"]: c["drifted"] for c in report["columns"]}
    assert drifted == {"x[0]": False, "x[1]": True, "prediction": True}
    assert report["drifted_any"] and report["drifted_columns"] == 1 and report["drift_share"] == 0.5
    assert report["prediction"]["drifted"] is True


def test_large_references_use_distances(store: Store) -> None:
    push(store, "m", 1)
    rng = np.random.default_rng(3)
    set_reference_profile(store, "m", 1, reference(rng, 5000))
    serve(store, 1, rng, requests=100, rows=10, shift=1.0)
    report = current_drift(store, store.version("m", 1), window_s=3600)
    by_name = {c["name"]: c for c in report["columns"]}
    assert by_name["x[0]"]["test"] == "wasserstein" and not by_name["x[0]"]["drifted"]
    assert by_name["x[1]"]["drifted"] and by_name["x[1]"]["statistic"] > 0.5


def test_old_traffic_is_outside_the_window(store: Store) -> None:
    push(store, "m", 1)
    rng = np.random.default_rng(4)
    set_reference_profile(store, "m", 1, reference(rng, 500))
    add_request(store, "m", 1, time.time() - 7200, x=[[1.0, 2.0]])
    report = current_drift(store, store.version("m", 1), window_s=3600)
    assert report["n_requests"] == 0 and "no recorded requests" in report["reason"]
    assert all(c["test"] == "no_data" for c in report["columns"]) and not report["drifted_any"]


def test_history_buckets(store: Store) -> None:
    push(store, "m", 1)
    rng = np.random.default_rng(5)
    set_reference_profile(store, "m", 1, reference(rng, 800), rng.beta(2, 5, 800))
    serve(store, 1, rng, requests=60, rows=5, shift=2.0)
    now = time.time()
    history = drift_history(store, store.version("m", 1), since=now - 120, until=now, step=60)
    assert history["available"] and len(history["buckets"]) == 2
    assert history["drift_share"][0] is None and history["drift_share"][1] == 0.5
