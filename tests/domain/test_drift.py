from __future__ import annotations

import json
import math
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2

from changeover.domain.drift import (
    DISTANCE_THRESHOLD,
    build_profile,
    drift_report,
    psi,
    psi_threshold,
)

ALPHA = 0.05
SHARES = [0.5, 0.3, 0.2]


def frame(rng: np.random.Generator, n: int, *, shift: float = 0.0,
          shares: list[float] | None = None) -> dict[str, np.ndarray]:
    return {
        "amount": rng.lognormal(3.0, 0.7, n) * math.exp(shift * 0.7),  # +1 sd in log space
        "age": rng.normal(40.0, 12.0, n) + shift * 12.0,
        "country": rng.choice(["fr", "de", "it"], n, p=shares or SHARES),
        "is_new": rng.binomial(1, 0.3, n),
    }


def test_profile_is_json_safe_and_bounded() -> None:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(frame(rng, 5000))
    data.loc[0, "age"] = np.nan
    profile = build_profile(data, rng.normal(size=5000), max_sample=500)
    json.dumps(profile, allow_nan=False)
    columns = profile["columns"]
    assert profile["n_rows"] == 5000
    assert columns["age"]["kind"] == "numeric" and columns["age"]["missing"] == 1
    assert len(columns["age"]["sample"]) == 500
    assert len(columns["age"]["bin_edges"]) == 9 and sum(columns["age"]["counts"]) == 4999
    assert columns["country"]["kind"] == "categorical"
    assert sum(columns["country"]["frequencies"].values()) == 5000
    assert columns["is_new"]["kind"] == "categorical"  # a 0/1 integer flag
    assert profile["prediction"]["kind"] == "numeric"


@pytest.mark.parametrize(
    ("n_reference", "numeric_test", "categorical_test"),
    [(800, "ks", "chi2"), (5000, "wasserstein", "jensen_shannon")],
)
def test_test_choice_follows_evidently(n_reference: int, numeric_test: str,
                                       categorical_test: str) -> None:
    rng = np.random.default_rng(1)
    report = drift_report(build_profile(frame(rng, n_reference)), frame(rng, 300))
    assert report.column("age").test == numeric_test
    assert report.column("country").test == categorical_test
    if n_reference <= 1000:
        assert report.column("is_new").test == "z"
        assert report.column("age").threshold == pytest.approx(ALPHA / 4)  # Bonferroni
    else:
        assert report.column("age").threshold == DISTANCE_THRESHOLD


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_samples_from_the_reference_rarely_drift(correction: Literal["bonferroni", "fdr"]) -> None:
    rng = np.random.default_rng(2)
    seeds, drifted = 200, 0
    for _ in range(seeds):
        profile = build_profile(frame(rng, 600), predictions=rng.normal(size=600))
        report = drift_report(profile, frame(rng, 300), rng.normal(size=300),
                              correction=correction)
        drifted += report.drifted_any
    assert drifted / seeds <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / seeds)


def test_large_reference_does_not_drift_on_its_own_distribution() -> None:
    rng = np.random.default_rng(3)
    profile = build_profile(frame(rng, 20_000))
    for _ in range(20):
        assert not drift_report(profile, frame(rng, 2000)).drifted_any


@pytest.mark.parametrize("n_reference", [800, 5000])
def test_a_clear_shift_drifts(n_reference: int) -> None:
    rng = np.random.default_rng(4)
    profile = build_profile(frame(rng, n_reference))
    moved = drift_report(profile, frame(rng, 500, shift=1.0))
    assert moved.column("age").drifted and moved.column("amount").drifted
    assert not moved.column("country").drifted
    shares = drift_report(profile, frame(rng, 500, shares=[0.2, 0.3, 0.5]))
    assert shares.column("country").drifted and not shares.column("age").drifted


def test_prediction_shift_drifts() -> None:
    rng = np.random.default_rng(5)
    profile = build_profile(frame(rng, 800), predictions=rng.normal(size=800))
    report = drift_report(profile, frame(rng, 400), rng.normal(1.0, 1.0, 400))
    assert report.column("prediction").drifted and report.drifted_any


def test_unseen_categories_and_missing_columns() -> None:
    rng = np.random.default_rng(6)
    profile = build_profile(frame(rng, 800))
    current = frame(rng, 400)
    current["country"] = rng.choice(["fr", "es"], 400)
    del current["age"]
    report = drift_report(profile, current, correction="fdr")
    assert report.column("country").drifted
    assert report.column("age").test == "no_data" and not report.column("age").drifted
    json.dumps(report.to_dict(), allow_nan=False)


def test_fdr_rejects_at_least_what_bonferroni_rejects() -> None:
    rng = np.random.default_rng(7)
    profile = build_profile(frame(rng, 800))
    current = frame(rng, 300, shift=0.25)
    bonf = drift_report(profile, current, correction="bonferroni")
    fdr = drift_report(profile, current, correction="fdr")
    for column in bonf.columns:
        assert fdr.column(column.name).drifted >= column.drifted


def test_unknown_correction_is_refused() -> None:
    rng = np.random.default_rng(8)
    with pytest.raises(ValueError):
        drift_report(build_profile(frame(rng, 100)), frame(rng, 100), correction=cast(Any, "holm"))


def test_psi_by_hand() -> None:
    # counts + 0.5: reference [50.5, 50.5] -> [0.5, 0.5]; current [80.5, 20.5] -> [0.797, 0.203]
    # PSI = (0.797 − 0.5)·ln(0.797/0.5) + (0.203 − 0.5)·ln(0.203/0.5) = 0.1386 + 0.2679 = 0.4065
    assert psi([50, 50], [80, 20]) == pytest.approx(0.4065, abs=1e-3)
    assert psi([10, 0], [10, 0]) == pytest.approx(0.0)
    # 10 bins, n = m = 100: (1/100 + 1/100)·χ²_9(0.95) = 0.02·16.919 = 0.3384
    assert psi_threshold(100, 100, 10, 0.05) == pytest.approx(0.02 * chi2.ppf(0.95, 9))


def test_psi_threshold_is_sample_aware_where_the_fixed_rule_is_not() -> None:
    """No drift, 100 reference and 100 current rows, 10 bins: PSI > 0.1 most of the time,
    PSI > its sample-aware threshold about alpha of the time."""
    rng = np.random.default_rng(9)
    seeds, over_fixed, over_aware = 1000, 0, 0
    for _ in range(seeds):
        profile = build_profile({"x": rng.normal(size=100)})
        column = drift_report(profile, {"x": rng.normal(size=100)}).column("x")
        assert column.psi is not None and column.psi_threshold is not None
        over_fixed += column.psi > 0.1
        over_aware += column.psi_exceeds
    assert over_fixed / seeds > 0.6
    assert over_aware / seeds <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / seeds)
