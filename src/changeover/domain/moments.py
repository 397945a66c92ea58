"""Running sums of a per-request figure: its count, sum and sum of squares, for a mean and
its variance (what the judge's intervals on means are built from). Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Moments"]


@dataclass
class Moments:
    """Count, sum and sum of squares of a per-request figure (for a mean and its variance)."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, values: ArrayLike) -> None:
        x = np.asarray(values, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        self.n += int(x.size)
        self.total += float(x.sum())
        self.total_sq += float(np.square(x).sum())

    def add_sums(self, n: int, total: float, total_sq: float) -> None:
        self.n += n
        self.total += total
        self.total_sq += total_sq

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def var(self) -> float:
        """The sample variance (n − 1); 0 below two values."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))
