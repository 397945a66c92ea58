"""The store's tables. The schema is created and changed only by Alembic migrations
(store/migrations); this module is what the code and autogenerate read."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

models = Table(
    "models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("created_at", Float, nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("runtime", String(32), nullable=False),
    Column("artifact", Text, nullable=False),  # path relative to the artifacts folder
    Column("signature", JSON, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("trusted", Boolean, nullable=False, default=False),
    Column("trusted_types", JSON, nullable=True),  # skops: the types trusted at push (--trust-type), exactly these
    Column("source", Text, nullable=True),  # where it was pushed from (lineage)
    Column("created_at", Float, nullable=False),
    Column("gate", JSON, nullable=True),  # the offline gate's latest verdict and evidence
    Column("profile", JSON, nullable=True),  # drift reference profile
    UniqueConstraint("model", "number", name="uq_versions_model_number"),
    UniqueConstraint("model", "sha256", name="uq_versions_model_sha256"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("model", String(200), ForeignKey("models.name"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("previous", Integer, nullable=True),
    Column("at", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Index("ix_alias_history_model", "model", "alias"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("model", String(200), nullable=True),
    Column("kind", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("evidence", JSON, nullable=True),
    Column("dedup", String(200), nullable=True),  # an idempotency key: the same event is written once
    Index("ix_events_model", "model", "id"),
    UniqueConstraint("dedup", name="uq_events_dedup"),
)

policies = Table(
    "policies",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("generation", Integer, primary_key=True),
    Column("body", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

requests = Table(
    "requests",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("output", JSON, nullable=True),  # a compact summary of the answer (first row's outputs)
    Column("inputs", JSON, nullable=True),  # the whole request, only for recorded (sampled) rows
    Column("answer", JSON, nullable=True),  # the whole answer, only for recorded rows
    Column("segment", String(200), nullable=True),
    Column("recorded", Boolean, nullable=False, default=False),
    Index("ix_requests_model_at", "model", "at"),
    Index("ix_requests_recorded", "model", "recorded", "at"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("label", JSON, nullable=True),
    Column("reward", Float, nullable=True),
    Column("at", Float, nullable=False),
    Column("served_at", Float, nullable=False),
    Index("ix_feedback_model_at", "model", "at"),
)

shadow_pairs = Table(
    "shadow_pairs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("shadow_version", Integer, nullable=False),
    Column("champion_version", Integer, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Column("champion_output", JSON, nullable=True),
    Column("shadow_output", JSON, nullable=True),
    Column("champion_ms", Float, nullable=True),
    Column("shadow_ms", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("segment", String(200), nullable=True),
    Index("ix_shadow_pairs_model", "model", "shadow_version", "at"),
    Index("ix_shadow_pairs_request", "request_id"),
)

shadow_stats = Table(
    "shadow_stats",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("shadow_version", Integer, primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("body", JSON, nullable=False),  # running comparison figures, merged from every gateway
    Column("updated_at", Float, nullable=False),
)

metric_windows = Table(
    "metric_windows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("replica", String(64), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("latencies", JSON, nullable=False),  # a bounded sample of latencies in ms
    Column("predictions", JSON, nullable=False),  # a bounded sample of numeric predictions
    Index("ix_metric_windows_model", "model", "version", "end"),
)

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("status", JSON, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("command", String(32), nullable=True),  # an operator command waiting for the controller
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_rollouts_model", "model", "active"),
    # at most one active rollout per model: a second start loses the race with an IntegrityError
    Index("uq_rollouts_one_active", "model", unique=True, sqlite_where=text("active"),
          postgresql_where=text("active")),
)

analyses = Table(
    "analyses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Integer, ForeignKey("rollouts.id"), nullable=True),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(32), nullable=False),  # gate, compat, shadow, canary, watch
    Column("outcome", String(32), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("at", Float, nullable=False),
    Column("dedup", String(200), nullable=True),
    UniqueConstraint("dedup", name="uq_analyses_dedup"),
    Index("ix_analyses_model", "model", "version", "kind"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
)

artifact_blobs = Table(
    "artifact_blobs",
    metadata,  # content-addressed artifact bytes when CHANGEOVER_ARTIFACTS=db (registry/shared.py)
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)

replicas = Table(
    "replicas",
    metadata,  # one heartbeat row per gateway replica: what its recorder reports (store/replicas.py)
    Column("name", String(64), primary_key=True),
    Column("heartbeat_at", Float, nullable=False),
    Column("recorder_stalled_since", Float, nullable=True),  # its writes fail since then (None: they succeed)
    Column("recorder_pending", Integer, nullable=False, default=0),
    Column("recorder_dropped", Integer, nullable=False, default=0),
)
