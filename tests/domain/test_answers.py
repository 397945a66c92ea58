from __future__ import annotations

import numpy as np

from changeover.domain.answers import allows_nonfinite, nonfinite


def test_non_finite_floats_are_found_and_said_where() -> None:
    assert nonfinite({"y": np.array([1.0, 2.0]), "label": np.array([1, 2])}) is None
    said = nonfinite({"label": np.array([1, 2]), "p": np.array([[0.1, 0.9], [np.nan, 0.5], [np.inf, 0.0]])})
    assert said == "NaN in output 'p' (row 1; 2 non-finite of 6)"
    assert nonfinite({"y": np.array([np.inf], dtype=np.float32)}) == "infinity in output 'y' (row 0; 1 non-finite of 1)"
    assert nonfinite({"names": np.array(["a", "nan"], dtype=object)}) is None


def test_a_version_may_allow_them() -> None:
    assert allows_nonfinite({"allow_nonfinite": "true"}) and not allows_nonfinite({}) \
        and not allows_nonfinite({"allow_nonfinite": "no"})
