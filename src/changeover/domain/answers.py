"""What a model's answer must be before it reaches a user: numbers that are numbers.

JSON has no NaN or infinity; a float output holding one used to be answered 200 with a silent
``null``. A version's non-finite output is its error instead (counted as a 500 is), unless the
version was pushed with the label ``allow_nonfinite=true`` (a model whose NaN means "no score").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["ALLOW_LABEL", "allows_nonfinite", "nonfinite"]

ALLOW_LABEL = "allow_nonfinite"


def allows_nonfinite(labels: Mapping[str, str] | None) -> bool:
    return str((labels or {}).get(ALLOW_LABEL, "")).strip().lower() in ("1", "true", "yes")


def nonfinite(outputs: Mapping[str, np.ndarray]) -> str | None:
    """Where the first NaN or infinity of a float output is, in words; None when there is none."""
    for name, value in outputs.items():
        array = np.asarray(value)
        if array.dtype.kind not in "fc" or array.size == 0 or math.isfinite(array.sum()):
            continue  # the sum of finite numbers is finite, but for an overflow, which the look below clears
        bad = ~np.isfinite(array)
        if bad.any():
            index = np.unravel_index(int(np.argmax(bad)), array.shape)
            what = "NaN" if np.isnan(array[index]) else "infinity"
            where = f"row {index[0]}" if array.ndim else "its only value"
            return f"{what} in output {name!r} ({where}; {int(bad.sum())} non-finite of {array.size})"
    return None
