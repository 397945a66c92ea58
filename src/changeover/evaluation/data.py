"""Loading evaluation tables and checking them before any model runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

__all__ = ["DataError", "check_list_ranking_data", "check_task_data", "feature_columns_for", "load_table"]

_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_TASKS = ("classification", "regression", "ranking")


class DataError(ValueError):
    """The evaluation data cannot be used; the message names the file, column or type."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in _CSV_SUFFIXES + _PARQUET_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def load_table(path: str | Path) -> pd.DataFrame:
    """Read a .csv (.csv.gz) or .parquet (.pq) file into a DataFrame."""
    p = Path(path)
    suffix = _suffix(p)
    if suffix not in _CSV_SUFFIXES + _PARQUET_SUFFIXES:
        raise DataError(
            f"{p}: unknown file type {suffix or '(no extension)'!r}; "
            "expected .csv, .csv.gz, .parquet or .pq"
        )
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty")
    try:
        df = pd.read_csv(p) if suffix in _CSV_SUFFIXES else pd.read_parquet(p)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{p}: the file has no columns") from exc
    except Exception as exc:  # pandas and pyarrow raise many types for a broken file
        kind = "CSV" if suffix in _CSV_SUFFIXES else "Parquet"
        raise DataError(f"{p}: cannot read it as {kind}: {exc}") from exc
    if len(df) == 0:
        raise DataError(f"{p}: the table has no rows")
    return df


def feature_columns_for(
    df: pd.DataFrame, *, target: str, feature_columns: list[str] | None, query_column: str | None,
    exclude: Sequence[str] = (),
) -> list[str]:
    """The given feature columns, or every column but the target, the query column and
    ``exclude`` (the item and segment columns)."""
    if feature_columns is not None:
        return list(feature_columns)
    return [c for c in df.columns if c not in (target, query_column, *exclude)]


def check_task_data(
    df: pd.DataFrame,
    *,
    task: str,
    target: str,
    feature_columns: list[str] | None,
    query_column: str | None = None,
    numeric_features: bool = True,
    exclude: Sequence[str] = (),
) -> None:
    """Raise one DataError that lists every problem found, or return None."""
    if task not in _TASKS:
        raise DataError(f"unknown task {task!r}: expected one of {', '.join(_TASKS)}")
    if len(df) == 0:
        raise DataError("the table has no rows")
    problems: list[str] = []
    columns = set(df.columns)
    if target not in columns:
        problems.append(f"target column {target!r} is missing")
    if task == "ranking":
        if query_column is None:
            problems.append("ranking needs a query column (query_column) to group rows")
        elif query_column not in columns:
            problems.append(f"query column {query_column!r} is missing")
        elif df[query_column].isna().any():
            n = int(df[query_column].isna().sum())
            problems.append(f"query column {query_column!r} has {n} missing values")
    features = feature_columns_for(
        df, target=target, feature_columns=feature_columns, query_column=query_column, exclude=exclude
    )
    problems += _feature_problems(df, features, target, numeric_features)
    if target in columns:
        problems += _target_problems(df[target], task=task, target=target)
    if problems:
        raise DataError("; ".join(problems))


def check_list_ranking_data(
    df: pd.DataFrame,
    *,
    target: str,
    feature_columns: list[str] | None,
    query_column: str | None,
    item_column: str | None,
    exclude: Sequence[str] = (),
    numeric_features: bool = True,
) -> None:
    """The holdout of a ranker that answers lists: (query, item, relevance) rows when
    ``item_column`` is given (a query column, relevance >= 0 in ``target``), else one row per
    query whose ``target`` holds its relevant items. One DataError listing every problem."""
    if len(df) == 0:
        raise DataError("the table has no rows")
    columns = set(df.columns)
    problems: list[str] = []
    if target not in columns:
        problems.append(f"target column {target!r} is missing")
    if item_column is not None:
        if item_column not in columns:
            problems.append(f"item column {item_column!r} is missing")
        elif df[item_column].isna().any():
            problems.append(f"item column {item_column!r} has {int(df[item_column].isna().sum())} missing values")
        if query_column is None:
            problems.append("(query, item, relevance) rows need a query column (query_column) to group them")
    elif target in columns and pd.api.types.is_numeric_dtype(df[target]):
        problems.append(f"target column {target!r} holds numbers: give the item column of these (query, item, "
                        "relevance) rows (item_column), or make the target a list of relevant items per query")
    if query_column is not None:
        if query_column not in columns:
            problems.append(f"query column {query_column!r} is missing")
        elif df[query_column].isna().any():
            problems.append(f"query column {query_column!r} has {int(df[query_column].isna().sum())} missing values")
    features = feature_columns_for(df, target=target, feature_columns=feature_columns, query_column=query_column,
                                   exclude=exclude)
    problems += _feature_problems(df, features, target, numeric_features)
    if item_column is not None and target in columns:
        problems += _target_problems(df[target], task="ranking", target=target)
    if problems:
        raise DataError("; ".join(problems))


def _feature_problems(df: pd.DataFrame, features: list[str], target: str, numeric_features: bool) -> list[str]:
    columns = set(df.columns)
    problems: list[str] = []
    missing = [c for c in features if c not in columns]
    if missing:
        problems.append(f"feature columns missing: {', '.join(map(repr, missing))}")
    if not features:
        problems.append("there are no feature columns")
    if target in features:
        problems.append(f"the target column {target!r} is among the feature columns")
    if numeric_features:
        bad = [
            f"{c!r} ({df[c].dtype})"
            for c in features
            if c in columns and not pd.api.types.is_numeric_dtype(df[c])
        ]
        if bad:
            problems.append(f"feature columns are not numeric: {', '.join(bad)}")
    gaps = [f"{c!r} ({int(df[c].isna().sum())} rows)" for c in features if c in columns and df[c].isna().any()]
    if gaps:
        problems.append(f"feature columns have missing values: {', '.join(gaps)}")
    return problems


def _target_problems(y: pd.Series, *, task: str, target: str) -> list[str]:
    n_nan = int(y.isna().sum())
    if n_nan:
        return [f"target column {target!r} has {n_nan} missing values"]
    if task == "classification":
        if pd.api.types.infer_dtype(y, skipna=True) in ("mixed", "mixed-integer"):
            return [f"target column {target!r} mixes types (e.g. numbers and strings)"]
        classes = y.unique()
        if len(classes) < 2:
            only = classes[0].item() if hasattr(classes[0], "item") else classes[0]
            return [f"target column {target!r} has a single class ({only!r})"]
        return []
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if not numeric:
        return [f"target column {target!r} must be numeric for {task}, not {y.dtype}"]
    if task == "ranking" and (y < 0).any():
        return [f"target column {target!r} holds relevance and must be >= 0"]
    if task == "ranking" and not (y > 0).any():
        return [f"target column {target!r}: no row is relevant (relevance > 0)"]
    finite = pd.Series(pd.to_numeric(y)).abs() != float("inf")
    if not finite.all():
        return [f"target column {target!r} has infinite values"]
    return []
