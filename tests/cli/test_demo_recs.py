"""The recommender part of `changeover demo`: its two rankers, its click model, and how it reads
the judge's evidence (the whole part runs in `make demo`, against a real server)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from changeover.cli.demo_recs import REVERSED_SHARE, describe, ranking_evidence, relevant_items, write_rankers


def load(folder: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"ranker_{folder.name.replace('-', '_')}", folder / "predictor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ranker = module.Ranker()
    ranker.load(str(folder))
    return ranker


def test_v2_reverses_the_same_ten_items_for_about_30_percent_of_users(tmp_path: Path) -> None:
    v1_path, v2_path = write_rankers(tmp_path)
    v1, v2 = load(v1_path), load(v2_path)
    users = np.arange(600, dtype=np.int64)
    a, b = v1.predict({"user_id": users}), v2.predict({"user_id": users})
    assert a["items"].shape == (600, 10) and a["scores"].dtype == np.float32
    reversed_rows = [bool((b["items"][i] == a["items"][i][::-1]).all()) for i in range(600)]
    same_rows = [bool((b["items"][i] == a["items"][i]).all()) for i in range(600)]
    assert all(r or s for r, s in zip(reversed_rows, same_rows, strict=True))
    assert abs(np.mean(reversed_rows) - REVERSED_SHARE) < 0.06
    again = v1.predict({"user_id": users[:5]})["items"]  # deterministic, whatever the batch
    assert (again == a["items"][:5]).all() and len({tuple(r) for r in a["items"]}) > 100


def test_the_relevant_item_is_in_v1s_top_three(tmp_path: Path) -> None:
    v1_path, _ = write_rankers(tmp_path)
    v1 = load(v1_path)
    relevant = relevant_items(v1_path, 300)
    ranks = [list(v1.top(u)[0]).index(relevant[u]) for u in range(300)]
    assert set(ranks) <= {0, 1, 2} and 0.6 < ranks.count(0) / 300 < 0.8


def test_the_failed_ranking_check_is_read_from_the_verdicts() -> None:
    ranking = {"name": "ranking", "outcome": "fail", "estimate": 0.16, "low": 0.05, "high": 0.27,
               "tolerance": 0.045, "alpha": 0.025, "n_canary": 145, "n_baseline": 166, "reason": "worse"}
    rollout = {"analyses": [
        {"kind": "compat", "outcome": "pass", "evidence": {}},
        {"kind": "canary", "outcome": "fail", "evidence": {"verdict": {"checks": [
            {"name": "error_rate", "outcome": "inconclusive"}, ranking]}}},
    ]}
    found = ranking_evidence(rollout)
    assert found is not None and found[0] is ranking and [c["name"] for c in found[1]] == ["error_rate"]
    text = describe(*found)
    assert "lower by 0.160" in text and "0.045 (5%" in text and "[+0.050, +0.270]" in text and "145 canary" in text
    assert "error_rate inconclusive" in text
    assert ranking_evidence({"analyses": [{"kind": "canary", "outcome": "pass", "evidence": {"checks": [
        {"name": "ranking", "outcome": "pass"}]}}]}) is None
