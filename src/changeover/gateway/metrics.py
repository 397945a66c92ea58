"""Prometheus metrics of the data plane (one registry per app, so tests don't collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from changeover.web.prometheus import GAUGE_MODE

# with `serve --workers N` (Prometheus' multiprocess mode) a gauge shows the most recent value any
# live worker set: every worker follows the same policies and reads the same store

BATCH_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "changeover_requests", "Inference requests answered", ["model", "version", "code"], registry=r
        )
        self.errors = Counter(
            "changeover_errors",
            "Inference requests that failed in a version: it raised (500), or its signature refused the request (4xx)",
            ["model", "version"], registry=r,
        )
        self.refused = Counter(
            "changeover_refused",
            "Requests a version refused because they do not fit its signature (datatype, shape, inputs, outputs)",
            ["model", "version", "code"], registry=r,
        )
        self.rejected = Counter(
            "changeover_rejected", "Requests refused before reaching a version (malformed, unknown model; 4xx)",
            ["model", "code"], registry=r,
        )
        self.latency = Histogram(
            "changeover_latency_seconds", "Latency of answered inference requests", ["model", "version"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.generation = Gauge("changeover_policy_generation", "Traffic policy generation served", ["model"], registry=r,
                                multiprocess_mode=GAUGE_MODE)
        self.weight = Gauge("changeover_traffic_weight", "Percent of traffic per version", ["model", "version"],
                            registry=r, multiprocess_mode=GAUGE_MODE)
        self.shadow_calls = Counter(
            "changeover_shadow_calls", "Mirrored calls by outcome", ["model", "version", "outcome"], registry=r
        )
        self.shadow_agreement = Gauge(
            "changeover_shadow_agreement", "Running agreement of a shadow with the champion", ["model", "version"],
            registry=r, multiprocess_mode=GAUGE_MODE,
        )
        self.dropped_records = Counter(
            "changeover_dropped_records", "Request-log rows dropped because the writer was behind", registry=r
        )
        self.feedback = Counter("changeover_feedback", "Feedback received", ["model", "outcome"], registry=r)
        self.interleave_calls = Counter(
            "changeover_interleave_calls",
            "Requests selected for interleaving by outcome: merged, or answered by the champion alone "
            "(candidate_error, timeout, not_a_ranking)",
            ["model", "outcome"], registry=r,
        )
        self.batch_rows = Histogram(
            "changeover_batch_rows", "Rows per predict call of versions that batch (max_batch_size > 1)",
            ["model", "version"], buckets=BATCH_ROWS_BUCKETS, registry=r,
        )
        self.batch_split_errors = Counter(
            "changeover_batch_split_errors",
            "Batches whose outputs had no row per input row (every request in them failed with a 500)",
            ["model", "version"], registry=r,
        )
