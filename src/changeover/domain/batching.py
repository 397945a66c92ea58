"""A version's batching, as its labels ask for it (``--label`` at push): ``max_batch_size``
(an int ≥ 1; batching is on when it is > 1) and ``max_batch_delay_ms`` (a float ≥ 0, default
`DEFAULT_DELAY_MS`). Pure: the registry checks a push's labels with `batch_config`, and the
gateway's batcher (`changeover.gateway.batching`) reads the same."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BatchConfig", "batch_config", "DEFAULT_DELAY_MS", "DELAY_LABEL", "MAX_DELAY_MS", "SIZE_LABEL"]

SIZE_LABEL = "max_batch_size"
DELAY_LABEL = "max_batch_delay_ms"
DEFAULT_DELAY_MS = 2.0
MAX_DELAY_MS = 10_000.0


@dataclass(frozen=True, slots=True)
class BatchConfig:
    max_batch_size: int
    max_batch_delay_ms: float


def batch_config(labels: Mapping[str, str]) -> BatchConfig | None:
    """The batching a version's labels ask for; None when it is off (no ``max_batch_size`` or
    1). ValueError naming the label for a value that is not allowed."""
    size_text = labels.get(SIZE_LABEL)
    delay_text = labels.get(DELAY_LABEL)
    if size_text is None:
        if delay_text is not None:
            _delay(delay_text)  # checked all the same
        return None
    try:
        size = int(size_text.strip())
    except ValueError:
        raise ValueError(f"{SIZE_LABEL}: {size_text!r} is not an integer") from None
    if size < 1:
        raise ValueError(f"{SIZE_LABEL}: must be at least 1, not {size}")
    delay = DEFAULT_DELAY_MS if delay_text is None else _delay(delay_text)
    return BatchConfig(size, delay) if size > 1 else None


def _delay(text: str) -> float:
    try:
        delay = float(text.strip())
    except ValueError:
        raise ValueError(f"{DELAY_LABEL}: {text!r} is not a number") from None
    if not math.isfinite(delay) or delay < 0 or delay > MAX_DELAY_MS:
        raise ValueError(f"{DELAY_LABEL}: must be between 0 and {MAX_DELAY_MS:g} ms, not {text!r}")
    return delay
