"""Evaluation jobs that run in a worker process, never on the serving event loop:
the compatibility check (signature comparison and replay) and the offline gate.

Each job opens the store and the registry itself, stores its verdict with the evidence,
writes the audit event, and returns a JSON-safe dict. Bad input comes back as
``{"error": ..., "field": ...}`` so the API can answer 422.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from changeover.domain.compat import compare_signatures
from changeover.domain.signature import NUMPY_BY_DATATYPE
from changeover.errors import ChangeoverError
from changeover.evaluation.data import DataError, check_task_data, feature_columns_for, load_table
from changeover.evaluation.gate import PredictionBatch, PredictionError, Predictor, run_gate
from changeover.evaluation.replay import replay
from changeover.evaluation.rules import RulesError, validate_rules
from changeover.registry.artifacts import ArtifactStore
from changeover.registry.service import Registry
from changeover.runtimes.base import LoadedModel
from changeover.store import tables as t
from changeover.store.store import Store, VersionRecord
from changeover.store.traffic import recorded_requests


def _open(store_url: str, artifacts_dir: str) -> tuple[Store, Registry]:
    store = Store(store_url, run_migrations=False)
    return store, Registry(store, ArtifactStore(Path(artifacts_dir)))


def _record_analysis(store: Store, record: VersionRecord, kind: str, outcome: str, evidence: dict[str, Any],
                     message: str, actor: str, rollout_id: int | None = None) -> None:
    dedup = f"{kind}:{rollout_id}" if rollout_id is not None else None
    try:
        with store.tx() as conn:
            conn.execute(insert(t.analyses).values(rollout_id=rollout_id, model=record.model, version=record.number,
                                                   kind=kind, outcome=outcome, evidence=evidence, at=time.time(),
                                                   dedup=dedup))
            store.add_event("analysis", message, model=record.model, actor=actor,
                            evidence=evidence | {"rollout": rollout_id}, conn=conn)
    except IntegrityError:
        pass  # this rollout's gate was already recorded (a run repeated after a restart)


NO_TRAFFIC = "no recorded requests to replay: the signature check alone decided"


def compat_check(store: Store, registry: Registry, cand: VersionRecord, champ: VersionRecord, limit: int = 1000,
                 actor: str = "api") -> dict[str, Any]:
    """The compatibility step: the candidate's signature against the champion's (the gateway's
    acceptance rule), then the newest recorded production requests replayed through it. The
    verdict fails on a breaking change, a replayed request the candidate refuses or raises on,
    or an invalid output; the result carries the evidence (changes, causes, replay figures and
    examples). Nothing is written."""
    changes = compare_signatures(champ.signature, cand.signature)
    breaking = [c for c in changes if c.breaking]
    recorded = recorded_requests(store, cand.model, limit=limit)
    runtime = registry.load(cand, actor=actor)
    try:
        report = replay(runtime, recorded)
    finally:
        runtime.close()
    causes = [f"{c.kind} {c.tensor}: {c.detail}" for c in breaking]
    if report.errors:
        causes.append(f"{report.errors} of {report.requests} recorded requests failed in the candidate")
    if report.invalid_outputs:
        causes.append(f"{report.invalid_outputs} recorded requests got invalid outputs (NaN, infinity, wrong shape)")
    replayed = report.to_dict()
    if not recorded:
        replayed["note"] = NO_TRAFFIC
    return {
        "model": cand.model, "candidate": cand.number, "against": champ.number, "verdict": "fail" if causes else "pass",
        "causes": causes, "changes": [c.to_dict() for c in changes], "replay": replayed,
    }


def compat_summary(result: dict[str, Any]) -> str:
    """One line for the audit log: the verdict and its causes, or what was replayed."""
    head = f"{result['model']}: compat of v{result['candidate']} against v{result['against']}: {result['verdict']}"
    if result["causes"]:
        return f"{head} — {'; '.join(result['causes'])}"
    replayed = result["replay"]
    return head + (f" ({replayed['note']})" if replayed.get("note")
                   else f" ({replayed['requests']} recorded requests replayed)")


def compat_job(store_url: str, artifacts_dir: str, model: str, candidate: str, against: str = "champion",
               limit: int = 1000, actor: str = "api") -> dict[str, Any]:
    store, registry = _open(store_url, artifacts_dir)
    try:
        cand = store.resolve(model, candidate)
        champ = store.resolve(model, against)
        result = compat_check(store, registry, cand, champ, limit, actor)
        _record_analysis(store, cand, "compat", result["verdict"], result, compat_summary(result), actor)
        return result
    except ChangeoverError as exc:
        return {"error": str(exc), "field": "version"}
    finally:
        store.close()


def apply_compat_job(store_url: str, artifacts_dir: str, model: str, candidate: int, champion: int,
                     limit: int = 1000, actor: str = "api") -> dict[str, Any]:
    """The compatibility step of `apply`, before the rollout exists: the result only; the API
    writes it with the rollout (or with the refusal)."""
    store, registry = _open(store_url, artifacts_dir)
    try:
        return compat_check(store, registry, store.version(model, candidate), store.version(model, champion),
                            limit, actor)
    except ChangeoverError as exc:
        return {"error": str(exc), "field": "candidate"}
    finally:
        store.close()


def predictor_for(model: LoadedModel, features: list[str]) -> Predictor:
    """Adapt a loaded version to the gate: a frame of feature rows in, labels/probabilities/values out."""
    spec = model.signature.inputs[0]
    classes = getattr(getattr(model, "estimator", None), "classes_", None)

    def predict(frame: pd.DataFrame) -> PredictionBatch:
        x = frame[features].to_numpy(dtype=NUMPY_BY_DATATYPE.get(spec.datatype, np.float64))
        out = {k: np.asarray(v) for k, v in model.predict({spec.name: x}).items()}
        label = out.get("label")
        proba = out.get("probabilities")
        if label is None:  # e.g. ONNX from skl2onnx: output_label / output_probability
            label = next((v for v in out.values() if v.ndim == 1), next(iter(out.values())).reshape(-1))
            proba = next((v for v in out.values() if v.ndim == 2 and v.dtype.kind == "f"), None)
        return PredictionBatch(values=label.reshape(-1), proba=proba,
                               classes=np.asarray(classes) if classes is not None and proba is not None else None)

    return predict


def _features(record: VersionRecord, frame: pd.DataFrame, target: str, query_column: str | None) -> list[str]:
    if record.signature.features:
        missing = [f for f in record.signature.features if f not in frame.columns]
        if missing:
            raise DataError(f"the data lacks columns the model reads: {', '.join(missing[:10])}")
        return list(record.signature.features)
    columns = feature_columns_for(frame, target=target, feature_columns=None, query_column=query_column)
    width = record.signature.inputs[0].shape[-1] if record.signature.inputs else -1
    if width > 0 and len(columns) != width:
        raise DataError(f"the file does not match the model's signature: v{record.number} reads {width} features, "
                        f"the data has {len(columns)} feature columns besides {target!r}")
    return columns


def gate_job(store_url: str, artifacts_dir: str, model: str, candidate: str, against: str | None, data_path: str,
             task: str, target: str, require: dict[str, Any] | None, ks: list[int], query_column: str | None,
             report: bool = True, actor: str = "api", rollout_id: int | None = None,
             n_boot: int = 1000) -> dict[str, Any]:
    store, registry = _open(store_url, artifacts_dir)
    try:
        try:
            cand = store.resolve(model, candidate)
            champ = store.resolve(model, against) if against else None
        except ChangeoverError as exc:
            return {"error": str(exc), "field": "version"}
        try:
            if task not in ("classification", "regression", "ranking"):
                raise DataError(f"task must be classification, regression or ranking, got {task!r}")
            validate_rules(require or {}, task, ks)
            frame = load_table(data_path)
            features = _features(cand, frame, target, query_column)
            check_task_data(frame, task=task, target=target, feature_columns=features, query_column=query_column)
        except (DataError, RulesError) as exc:  # name the user's file, not the server's temporary copy
            message = str(exc).replace(str(data_path), Path(data_path).name)
            return {"error": message, "field": "policy" if isinstance(exc, RulesError) else "data"}
        cand_model = registry.load(cand, actor=actor)
        champ_model = registry.load(champ, actor=actor) if champ is not None and champ.number != cand.number else None
        try:
            result = run_gate(
                task=task, data=frame, target=target,
                champion=predictor_for(champ_model, features) if champ_model else None,
                candidate=predictor_for(cand_model, features), require=require or {}, ks=ks,
                query_column=query_column, feature_columns=features, n_boot=n_boot,
            )
        except Exception as exc:  # a version that raises, or answers NaN or malformed: a failed gate, not bad input
            if not isinstance(exc, PredictionError):
                exc = PredictionError(f"a version raised while predicting the held-out rows: "
                                      f"{type(exc).__name__}: {exc}")
            summary = {"model": model, "candidate": cand.number, "against": champ.number if champ else None,
                       "verdict": "fail", "task": task, "n_rows": len(frame), "metrics": {}, "latency": {},
                       "rules": [{"metric": "predictions", "rule": "valid predictions", "figure": None,
                                  "interval": None, "passed": False, "reason": str(exc)}]}
            store.set_version_field(model, cand.number, gate=summary)
            _record_analysis(store, cand, "gate", "fail", summary,
                             f"{model}: offline gate of v{cand.number}: fail — {exc}", actor, rollout_id)
            return {"result": summary, "html": None}
        finally:
            cand_model.close()
            if champ_model:
                champ_model.close()
        summary = result.to_dict() | {"model": model, "candidate": cand.number,
                                      "against": champ.number if champ else None, "data": Path(data_path).name}
        html = None
        if report:
            from changeover.evaluation.report import render_html

            html = render_html(result, model=model, champion_label=f"v{champ.number}" if champ else "none",
                               candidate_label=f"v{cand.number}")
        store.set_version_field(model, cand.number, gate=summary)
        failed = [f"{r['metric']}: {r['reason']}" for r in result.to_dict()["rules"] if not r["passed"]]
        _record_analysis(store, cand, "gate", result.verdict, summary,
                         f"{model}: offline gate of v{cand.number}"
                         + (f" against v{champ.number}" if champ else "") + f": {result.verdict}"
                         + (f" — {'; '.join(failed)}" if failed else ""), actor, rollout_id)
        try:  # the drift reference: the data the version was validated on, and its predictions there
            from changeover.monitoring.drift_monitor import set_reference_profile

            preds = result.candidate_predictions
            scores = preds.proba[:, 1] if preds.proba is not None and preds.proba.shape[1] == 2 else preds.values
            set_reference_profile(store, model, cand.number, frame[features],
                                  scores if np.asarray(scores).dtype.kind in "fiub" else None,
                                  source=f"gate on {Path(data_path).name}")
        except Exception as exc:  # the gate's verdict stands without a drift reference
            store.add_event("profile_failed", f"{model} v{cand.number}: no drift reference ({exc})", model=model,
                            actor=actor)
        return {"result": summary, "html": html}
    finally:
        store.close()
