"""Evaluation jobs that run in a worker process, never on the serving event loop:
the compatibility check (signature comparison and replay) and the offline gate.

Each job opens the store and the registry itself, stores its verdict with the evidence,
writes the audit event, and returns a JSON-safe dict. Bad input comes back as
``{"error": ..., "field": ...}`` so the API can answer 422.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.exc import IntegrityError

from changeover.domain.compat import compare_signatures
from changeover.domain.signature import NUMPY_BY_DATATYPE, Signature, TensorSpec
from changeover.errors import ChangeoverError
from changeover.evaluation.data import (
    DataError,
    check_list_ranking_data,
    check_task_data,
    feature_columns_for,
    load_table,
)
from changeover.evaluation.gate import PredictionBatch, PredictionError, Predictor, item_column_for, run_gate
from changeover.evaluation.replay import replay
from changeover.evaluation.rules import RulesError, validate_rules
from changeover.registry.service import Registry
from changeover.registry.shared import open_locator
from changeover.runtimes.base import LoadedModel
from changeover.store import analyses
from changeover.store import rollouts as rollout_store
from changeover.store.store import Store, VersionRecord
from changeover.store.traffic import recorded_requests


def _open(store_url: str, artifacts: str) -> tuple[Store, Registry]:
    """``artifacts``: the server's `Artifacts.locator` (the local folder's path, or a shared store's spec)."""
    store = Store(store_url, run_migrations=False)
    return store, Registry(store, open_locator(artifacts, store.engine))


def _record_analysis(store: Store, record: VersionRecord, kind: str, outcome: str, evidence: dict[str, Any],
                     message: str, actor: str, rollout_id: int | None = None) -> None:
    dedup = f"{kind}:{rollout_id}" if rollout_id is not None else None
    try:
        with store.tx() as conn:
            analyses.add(conn, rollout_id=rollout_id, model=record.model, version=record.number, kind=kind,
                         outcome=outcome, evidence=evidence, dedup=dedup)
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


def input_columns(signature: Signature, columns: Collection[str]) -> list[str] | None:
    """The columns that feed the version's inputs by name: every required input is a column and
    takes one value per row (shape [-1] or [-1, 1]). None: the version reads one matrix of
    feature columns (its first input)."""
    required = [t for t in signature.inputs if not t.optional]
    if not required or not all(t.name in columns and per_row_shape(t.shape) for t in signature.inputs
                               if t.name in columns or not t.optional):
        return None
    return [t.name for t in signature.inputs if t.name in columns]


def per_row_shape(shape: tuple[int, ...]) -> bool:
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


def column_input(spec: TensorSpec, values: pd.Series) -> np.ndarray:
    """One column as the input ``spec`` takes it; DataError naming the column when it cannot."""
    if spec.datatype == "BYTES":
        array = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)
    else:
        raw = values.to_numpy()
        dtype = np.dtype(NUMPY_BY_DATATYPE[spec.datatype])
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values) != (dtype.kind == "b"):
            raise DataError(f"column {spec.name!r} holds {values.dtype} values; the input is {spec.datatype}")
        if dtype.kind in "iu" and raw.dtype.kind == "f" and not np.all(np.mod(raw, 1) == 0):
            raise DataError(f"column {spec.name!r} has values with fractions; the input is {spec.datatype}")
        array = raw.astype(dtype)
    return array.reshape(-1, 1) if len(spec.shape) == 2 else array


def predictor_for(model: LoadedModel, features: list[str], *, lists: bool = False, label: str = "the version",
                  by_name: bool = False) -> Predictor:
    """Adapt a loaded version to the gate: a frame of feature rows in, labels/probabilities/values
    out, or, for a ranker that answers lists (``lists``), its output of role ranking. With
    ``by_name`` each input is the column of its name; otherwise the first input is the matrix of
    feature columns."""
    signature = model.signature
    spec = signature.inputs[0]
    specs = {t.name: t for t in signature.inputs}
    classes = getattr(getattr(model, "estimator", None), "classes_", None)
    ranking = signature.output_with_role("ranking") if lists else None
    if lists and ranking is None:
        raise DataError(f"{label} has no output of role ranking: it does not answer lists of item ids")

    def inputs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if by_name:
            return {name: column_input(specs[name], frame[name]) for name in features}
        return {spec.name: frame[features].to_numpy(dtype=NUMPY_BY_DATATYPE.get(spec.datatype, np.float64))}

    def predict(frame: pd.DataFrame) -> PredictionBatch:
        out = {k: np.asarray(v) for k, v in model.predict(inputs(frame)).items()}
        if ranking is not None:
            return PredictionBatch(ranking=ranked_ids(out, ranking, label))
        label_out = out.get("label")
        proba = out.get("probabilities")
        if label_out is None:  # e.g. ONNX from skl2onnx: output_label / output_probability
            label_out = next((v for v in out.values() if v.ndim == 1), next(iter(out.values())).reshape(-1))
            proba = next((v for v in out.values() if v.ndim == 2 and v.dtype.kind == "f"), None)
        return PredictionBatch(values=label_out.reshape(-1), proba=proba,
                               classes=np.asarray(classes) if classes is not None and proba is not None else None)

    return predict


def ranked_ids(outputs: dict[str, np.ndarray], spec: TensorSpec, label: str) -> np.ndarray:
    """The ids a ranker answered, checked against the datatype its signature declares."""
    if spec.name not in outputs:
        raise PredictionError(f"{label}: no {spec.name!r} in its answer (its output of role ranking)")
    ids = outputs[spec.name]
    integers = spec.datatype != "BYTES"
    if (integers and ids.dtype.kind not in "iu") or (not integers and ids.dtype.kind not in "OUS"):
        raise PredictionError(f"{label}: output {spec.name!r} is declared {spec.datatype} item ids, "
                              f"and answered {ids.dtype} values")
    return ids


def _features(record: VersionRecord, frame: pd.DataFrame, target: str, query_column: str | None,
              exclude: list[str]) -> tuple[list[str], bool]:
    """The columns the version reads, and whether they feed its inputs by name."""
    named = input_columns(record.signature, frame.columns)
    if named is not None:
        return named, True
    if record.signature.features:
        missing = [f for f in record.signature.features if f not in frame.columns]
        if missing:
            raise DataError(f"the data lacks columns the model reads: {', '.join(missing[:10])}")
        return list(record.signature.features), False
    columns = feature_columns_for(frame, target=target, feature_columns=None, query_column=query_column,
                                  exclude=exclude)
    width = record.signature.inputs[0].shape[-1] if record.signature.inputs else -1
    if width > 0 and len(columns) != width:
        raise DataError(f"the file does not match the model's signature: v{record.number} reads {width} features, "
                        f"the data has {len(columns)} feature columns besides {target!r}")
    return columns, False


def _rollout_segment(store: Store, rollout_id: int | None) -> str | None:
    """``gate.segment`` of the rollout this gate runs for (the controller passes the rollout, not its spec)."""
    if rollout_id is None:
        return None
    from changeover.domain.spec import parse_spec

    stored = rollout_store.spec_of(store, rollout_id)
    gate = parse_spec(stored).gate if stored is not None else None
    return getattr(gate, "segment", None) if gate is not None else None


def gate_job(store_url: str, artifacts_dir: str, model: str, candidate: str, against: str | None, data_path: str,
             task: str, target: str, require: dict[str, Any] | None, ks: list[int], query_column: str | None,
             report: bool = True, actor: str = "api", rollout_id: int | None = None,
             n_boot: int = 1000, item_column: str | None = None, segment: str | None = None) -> dict[str, Any]:
    """The offline gate. A candidate whose signature has an output of role ranking answers lists
    of item ids and is judged as such (`run_gate` with ``lists``); ``segment`` (else the
    rollout's ``gate.segment``) breaks every metric down by that column."""
    store, registry = _open(store_url, artifacts_dir)
    try:
        try:
            cand = store.resolve(model, candidate)
            champ = store.resolve(model, against) if against else None
        except ChangeoverError as exc:
            return {"error": str(exc), "field": "version"}
        segment = segment or _rollout_segment(store, rollout_id)
        lists = task == "ranking" and cand.signature.output_with_role("ranking") is not None
        if champ is not None and champ.number != cand.number and task == "ranking" and \
                (champ.signature.output_with_role("ranking") is not None) != lists:
            kinds = {True: "a list of item ids per query", False: "one score per (query, item) row"}
            return {"error": f"v{champ.number} answers {kinds[not lists]} and v{cand.number} {kinds[lists]}: "
                             "the gate compares two rankers that answer alike", "field": "against"}
        try:
            if task not in ("classification", "regression", "ranking"):
                raise DataError(f"task must be classification, regression or ranking, got {task!r}")
            validate_rules(require or {}, task, ks, segmented=segment is not None)
            frame = load_table(data_path)
            item = item_column_for(frame, target, item_column) if lists else item_column
            exclude = [c for c in (item, segment) if c]
            features, by_name = _features(cand, frame, target, query_column, exclude)
            for name in features if by_name else ():
                column_input(next(t for t in cand.signature.inputs if t.name == name), frame[name])
            numeric = not by_name
            if lists:
                check_list_ranking_data(frame, target=target, feature_columns=features, query_column=query_column,
                                        item_column=item, exclude=exclude, numeric_features=numeric)
            else:
                check_task_data(frame, task=task, target=target, feature_columns=features, query_column=query_column,
                                numeric_features=numeric, exclude=exclude)
        except (DataError, RulesError) as exc:  # name the user's file, not the server's temporary copy
            message = str(exc).replace(str(data_path), Path(data_path).name)
            return {"error": message, "field": "policy" if isinstance(exc, RulesError) else "data"}
        cand_model = registry.load(cand, actor=actor)
        champ_model = registry.load(champ, actor=actor) if champ is not None and champ.number != cand.number else None
        try:
            result = run_gate(
                task=task, data=frame, target=target,
                champion=predictor_for(champ_model, features, lists=lists, label=f"v{champ.number}", by_name=by_name)
                if champ_model and champ else None,
                candidate=predictor_for(cand_model, features, lists=lists, label=f"v{cand.number}", by_name=by_name),
                require=require or {}, ks=ks,
                query_column=query_column, feature_columns=features, n_boot=n_boot,
                lists=lists, item_column=item, segment_column=segment, numeric_features=numeric,
            )
        except (DataError, RulesError) as exc:  # found while reading the holdout's judgements or segments
            return {"error": str(exc).replace(str(data_path), Path(data_path).name),
                    "field": "policy" if isinstance(exc, RulesError) else "data"}
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
            inputs = frame[features] if result.input_rows is None else frame[features].iloc[result.input_rows]
            set_reference_profile(store, model, cand.number, inputs,
                                  scores if np.asarray(scores).dtype.kind in "fiub" and len(scores) == len(inputs)
                                  else None, source=f"gate on {Path(data_path).name}")
        except Exception as exc:  # the gate's verdict stands without a drift reference
            store.add_event("profile_failed", f"{model} v{cand.number}: no drift reference ({exc})", model=model,
                            actor=actor)
        return {"result": summary, "html": html}
    finally:
        store.close()
