"""What every plane's Prometheus metrics share."""

from __future__ import annotations

from typing import Final

# with ``serve --workers N`` (Prometheus' multiprocess folder) a gauge is the most recent value
# any live worker set: the traffic weights, generations and drift of one policy, not their sum
GAUGE_MODE: Final = "livemostrecent"
