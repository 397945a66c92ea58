from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from changeover.evaluation.data import DataError, check_task_data, load_table


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1, 0, 1], "y": [0, 1, 0]})


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.pq", "t.csv.gz"])
def test_load_table_round_trip(tmp_path: Path, name: str) -> None:
    df = _frame()
    path = tmp_path / name
    if name.startswith("t.csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path)
    pd.testing.assert_frame_equal(load_table(str(path)), df)


def test_load_table_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown file type '.json'"):
        load_table(tmp_path / "t.json")
    with pytest.raises(DataError, match="no such file"):
        load_table(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        load_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b,y\n")
    with pytest.raises(DataError, match="no rows"):
        load_table(header_only)
    broken = tmp_path / "broken.parquet"
    broken.write_text("this is not parquet")
    with pytest.raises(DataError, match="broken.parquet: cannot read it as Parquet"):
        load_table(broken)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text('a,b\n1,2\n3,4,5,6\n"unterminated\n')
    with pytest.raises(DataError, match="cannot read it as CSV"):
        load_table(ragged)


def test_good_data_passes() -> None:
    check_task_data(_frame(), task="classification", target="y", feature_columns=None)
    check_task_data(_frame(), task="regression", target="y", feature_columns=["a"])
    ranking = _frame().assign(q=["x", "x", "z"])
    check_task_data(ranking, task="ranking", target="y", feature_columns=None, query_column="q")


@pytest.mark.parametrize(
    ("df", "kwargs", "match"),
    [
        (_frame().iloc[:0], {}, "no rows"),
        (_frame(), {"target": "label"}, "target column 'label' is missing"),
        (
            _frame(),
            {"feature_columns": ["a", "c", "d"]},
            "feature columns missing: 'c', 'd'",
        ),
        (
            _frame().assign(s=["x", "y", "z"], t=["1", "2", "3"]),
            {},
            r"not numeric: 's' \(\w+\), 't' \(\w+\)",
        ),
        (_frame().assign(y=[1, 1, 1]), {}, "single class"),
        (_frame().assign(y=[0, np.nan, 1]), {}, "'y' has 1 missing values"),
        (_frame().assign(y=[0, "a", 1]), {}, "mixes types"),
        (_frame(), {"task": "ranking"}, "ranking needs a query column"),
        (_frame(), {"task": "ranking", "query_column": "q"}, "query column 'q' is missing"),
        (
            _frame().assign(q=["x", None, "x"]),
            {"task": "ranking", "query_column": "q"},
            "query column 'q' has 1 missing values",
        ),
        (
            _frame().assign(y=[-1, 0, 1], q=1),
            {"task": "ranking", "query_column": "q"},
            "must be >= 0",
        ),
        (
            _frame().assign(y=[0, 0, 0], q=1),
            {"task": "ranking", "query_column": "q"},
            "no row is relevant",
        ),
        (_frame().assign(y=["a", "b", "c"]), {"task": "regression"}, "must be numeric"),
        (_frame().assign(y=[1.0, np.inf, 2.0]), {"task": "regression"}, "infinite"),
        (_frame(), {"task": "clustering"}, "unknown task"),
        (_frame(), {"feature_columns": ["a", "y"]}, "target column 'y' is among the feature"),
        (_frame()[["y"]], {}, "no feature columns"),
    ],
)
def test_problems_are_named(df: pd.DataFrame, kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"task": "classification", "target": "y", "feature_columns": None}
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        check_task_data(df, **args)


def test_several_problems_in_one_error() -> None:
    df = _frame().assign(s=["x", "y", "z"])
    with pytest.raises(DataError) as err:
        check_task_data(df, task="classification", target="label", feature_columns=["s", "zz"])
    message = str(err.value)
    assert "'label' is missing" in message
    assert "'zz'" in message
    assert "'s'" in message


def test_non_numeric_features_allowed_when_asked() -> None:
    df = _frame().assign(s=["x", "y", "z"])
    check_task_data(
        df, task="classification", target="y", feature_columns=None, numeric_features=False
    )
