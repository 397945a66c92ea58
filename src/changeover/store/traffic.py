"""Store queries over served traffic: the request log, recorded requests, feedback,
metric windows and shadow pairs."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from changeover.errors import RequestNotFound
from changeover.store import tables as t
from changeover.store.store import Store

MAX_KEY = 128


def log_key(request_id: str) -> str:
    """The request log's key for a request id: the id itself, or for a client id longer than
    the column, a digest of it (the same on the way in and when feedback arrives)."""
    if len(request_id) <= MAX_KEY:
        return request_id
    return "sha256:" + hashlib.sha256(request_id.encode()).hexdigest()


def served_request(store: Store, request_id: str) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(t.requests).where(t.requests.c.request_id == log_key(request_id))).first()
    return dict(row._mapping) if row is not None else None


def add_feedback(store: Store, request_id: str, *, label: Any = None, reward: float | None = None) -> tuple[bool, dict[str, Any]]:
    """Join a label or reward to a served request. The first feedback wins: returns
    (accepted, the stored feedback)."""
    served = served_request(store, request_id)
    if served is None:
        raise RequestNotFound(request_id)
    row = {
        "request_id": served["request_id"],
        "model": served["model"],
        "label": label,
        "reward": reward,
        "at": time.time(),
        "served_at": served["at"],
    }
    try:
        with store.tx() as conn:
            conn.execute(insert(t.feedback).values(**row))
        return True, row
    except IntegrityError:
        with store.engine.connect() as conn:
            first = conn.execute(select(t.feedback).where(t.feedback.c.request_id == served["request_id"])).one()
        return False, dict(first._mapping)


def recorded_requests(store: Store, model: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    """The newest recorded requests (inputs and answers) of a model, for replay."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.requests)
            .where(and_(t.requests.c.model == model, t.requests.c.recorded.is_(True)))
            .order_by(t.requests.c.at.desc())
            .limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]


def labelled_requests(
    store: Store, model: str, *, since: float, until: float, label_delay: float = 0.0
) -> list[dict[str, Any]]:
    """Requests served in [since, until - label_delay] with their feedback (None when none came):
    only requests whose label had time to arrive are returned."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.requests.c.request_id, t.requests.c.version, t.requests.c.output, t.requests.c.at,
                   t.requests.c.segment, t.feedback.c.label, t.feedback.c.reward)
            .select_from(t.requests.outerjoin(t.feedback, t.feedback.c.request_id == t.requests.c.request_id))
            .where(and_(t.requests.c.model == model, t.requests.c.at >= since, t.requests.c.at <= until - label_delay))
        ).all()
    return [dict(r._mapping) for r in rows]


def metric_windows(store: Store, model: str, version: int, *, since: float, until: float | None = None) -> list[dict[str, Any]]:
    q = select(t.metric_windows).where(
        and_(t.metric_windows.c.model == model, t.metric_windows.c.version == version, t.metric_windows.c.end > since)
    )
    if until is not None:
        q = q.where(t.metric_windows.c.start < until)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(t.metric_windows.c.end)).all()]


def metric_window_ids(store: Store, model: str, versions: tuple[int, ...], *, since: float) -> list[int]:
    """Ids of the metric windows of these versions that end after `since` (what a look counts)."""
    q = select(t.metric_windows.c.id).where(
        and_(t.metric_windows.c.model == model, t.metric_windows.c.version.in_(versions),
             t.metric_windows.c.end > since))
    with store.engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(q).all()]


def metric_windows_by_id(store: Store, ids: list[int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with store.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = conn.execute(select(t.metric_windows).where(t.metric_windows.c.id.in_(chunk))).all()
            out += [dict(r._mapping) for r in rows]
    return out


def feedback_since(store: Store, model: str, versions: tuple[int, ...], *, served_since: float,
                   arrived_since: float) -> list[dict[str, Any]]:
    """Requests of these versions served since `served_since` whose feedback arrived at or after
    `arrived_since`, with that feedback (label, reward, and its time as `feedback_at`)."""
    q = (
        select(t.requests.c.request_id, t.requests.c.version, t.requests.c.output, t.requests.c.at,
               t.requests.c.segment, t.feedback.c.label, t.feedback.c.reward,
               t.feedback.c.at.label("feedback_at"))
        .select_from(t.requests.join(t.feedback, t.feedback.c.request_id == t.requests.c.request_id))
        .where(and_(t.requests.c.model == model, t.requests.c.version.in_(versions),
                    t.requests.c.at >= served_since, t.feedback.c.at >= arrived_since))
    )
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q).all()]


def recent_traffic(store: Store, model: str, version: int, *, seconds: float = 3600.0,
                   now: float | None = None) -> dict[str, Any]:
    """A version's traffic over the last `seconds`: requests per second, error rate, and up to
    20,000 of its sampled latencies (what a rollout plan is estimated from)."""
    now = time.time() if now is None else now
    rows = metric_windows(store, model, version, since=now - seconds, until=now)
    requests = sum(int(r["requests"]) for r in rows)
    errors = sum(int(r["errors"]) for r in rows)
    span = (max(r["end"] for r in rows) - min(r["start"] for r in rows)) if rows else 0.0
    latencies = [x for r in rows for x in (r["latencies"] or [])][-20_000:]
    return {"requests": requests, "errors": errors, "seconds": span,
            "rate": requests / span if span > 0 else 0.0,
            "error_rate": errors / requests if requests else 0.0, "latencies": latencies}


REQUEST_COLUMNS = ("request_id", "model", "version", "at", "status", "latency_ms", "output", "inputs", "answer",
                   "segment", "recorded")
_JSON_COLUMNS = frozenset({"output", "inputs", "answer"})
SQLITE_ROWS_PER_STATEMENT = 32766 // len(REQUEST_COLUMNS) // 4  # well within SQLite's bound on variables


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    # NaN and infinity become null (JSON has neither; PostgreSQL's json refuses them)
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=str).decode()


def insert_requests(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Append request-log rows in one statement: the hot write of every served request, so it
    goes to the driver's executemany directly (a third of the CPU of a Core insert per row)."""
    if not rows:
        return
    postgres = conn.dialect.name == "postgresql"
    mark = "%s" if conn.dialect.paramstyle in ("format", "pyformat") else "?"
    values = ", ".join(f"{mark}::json" if postgres and c in _JSON_COLUMNS else mark for c in REQUEST_COLUMNS)
    head = f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES "
    params = [(r["request_id"], r["model"], r["version"], r["at"], r["status"], r["latency_ms"],
               _json_text(r.get("output")), _json_text(r.get("inputs")), _json_text(r.get("answer")),
               r.get("segment"), bool(r.get("recorded"))) for r in rows]
    if postgres:  # psycopg sends an executemany as one pipeline
        conn.exec_driver_sql(f"{head}({values})", params)
        return
    # SQLite: one statement of many rows, not one step per row. Each step lets go of the GIL
    # and takes it back, and taking it back from the serving thread costs that thread a switch:
    # thousands a second under load, when a statement per chunk costs one
    for start in range(0, len(params), SQLITE_ROWS_PER_STATEMENT):
        chunk = params[start:start + SQLITE_ROWS_PER_STATEMENT]
        conn.exec_driver_sql(head + ", ".join([f"({values})"] * len(chunk)),
                             tuple(value for row in chunk for value in row))


# ---- what the gateway's writer writes (gateway/recorder.py): rows by kind, in batches ----------

REQUESTS, WINDOWS, SHADOW_PAIRS = "requests", "metric_windows", "shadow_pairs"
_WRITTEN = {REQUESTS: t.requests, WINDOWS: t.metric_windows, SHADOW_PAIRS: t.shadow_pairs}


def write_rows(store: Store, grouped: Mapping[str, list[dict[str, Any]]]) -> None:
    """Rows of each kind (`REQUESTS`, `WINDOWS`, `SHADOW_PAIRS`), in one transaction."""
    with store.tx() as conn:
        for kind, rows in grouped.items():
            if not rows:
                continue
            if kind == REQUESTS:
                insert_requests(conn, rows)
            else:
                conn.execute(insert(_WRITTEN[kind]), rows)


def known_request_ids(store: Store, ids: list[str]) -> set[str]:
    """Which of these request ids the request log holds already."""
    with store.engine.connect() as conn:
        return set(conn.execute(select(t.requests.c.request_id).where(t.requests.c.request_id.in_(ids))).scalars())


def ping(store: Store) -> None:
    """Raise unless the store answers."""
    with store.engine.connect() as conn:
        conn.execute(select(1))


def prune(store: Store, cutoff: float, max_recorded: int, max_requests: int) -> None:
    """Drop request-log rows, shadow pairs and metric windows older than ``cutoff``, and the
    oldest request-log rows past the bounds (recorded ones and the others apart)."""
    with store.tx() as conn:
        conn.execute(delete(t.requests).where(t.requests.c.at < cutoff))
        conn.execute(delete(t.shadow_pairs).where(t.shadow_pairs.c.at < cutoff))
        conn.execute(delete(t.metric_windows).where(t.metric_windows.c.end < cutoff))
        for recorded, bound in ((True, max_recorded), (False, max_requests)):
            count = conn.execute(select(func.count()).select_from(t.requests)
                                 .where(t.requests.c.recorded == recorded)).scalar() or 0
            if count > bound:
                edge = conn.execute(
                    select(t.requests.c.at).where(t.requests.c.recorded == recorded)
                    .order_by(t.requests.c.at.desc()).offset(bound).limit(1)
                ).scalar()
                if edge is not None:
                    conn.execute(delete(t.requests).where(t.requests.c.recorded == recorded, t.requests.c.at <= edge))
