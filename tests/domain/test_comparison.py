from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest

from changeover.domain.comparison import (
    KNOWN_FIGURES,
    MAX_SEGMENTS,
    Comparison,
    Pair,
    infer_task,
)
from changeover.domain.ranking_comparison import kendall_tau_shared, rank_biased_overlap
from changeover.domain.shadow_judgement import judge_shadow
from changeover.domain.spec import Requirement


def pair(i: int, champion: dict[str, Any], shadow: dict[str, Any] | None, champion_ms: float = 10.0,
         shadow_ms: float | None = 12.0, error: str | None = None, segment: str | None = None) -> Pair:
    return Pair(f"r{i}", champion, shadow, champion_ms, shadow_ms, error, segment)


def built(pairs: list[Pair], **kwargs: Any) -> Comparison:
    comparison = Comparison(**kwargs)
    for p in pairs:
        comparison.add(p)
    return comparison


@pytest.mark.parametrize(
    ("outputs", "task"),
    [
        ({"label": 1}, "classification"),
        ({"label": "cat", "probabilities": [0.2, 0.8]}, "classification"),
        ({"probabilities": [0.2, 0.8]}, "classification"),
        ({"items": [3, 1, 2], "scores": [0.9, 0.5, 0.1]}, "ranking"),
        ({"ranking": ["b", "a"]}, "ranking"),
        ({"prediction": 3.5}, "regression"),
        ({"output": 2}, "regression"),  # the only output, one number per row: a prediction
        ({"variable": [2.5]}, "regression"),  # [-1, 1] is one value per row too
        ({"scores": [0.3, 0.1, 0.9]}, None),  # scores without a ranking of ids: no role, nothing to compare
        ({"answer": "yes"}, None),
    ],
)
def test_infer_task(outputs: dict[str, Any], task: str | None) -> None:
    assert infer_task(outputs) == task


def test_infer_task_reads_declared_roles() -> None:
    assert infer_task({"recs": [3, 1], "s": [0.9, 0.1]}, {"recs": "ranking", "s": "scores"}) == "ranking"
    assert infer_task({"recs": [3, 1]}, {"recs": None}) is None


def test_classification_by_hand() -> None:
    champion = [0.9, 0.2, 0.8, 0.1]  # labels 1 0 1 0
    shadow = [0.7, 0.6, 0.8, 0.3]  # labels 1 1 1 0
    comparison = built([
        pair(i, {"label": int(c > 0.5), "probabilities": [[1 - c, c]]},
             {"label": float(s > 0.5), "probabilities": [[1 - s, s]]})  # 1.0 agrees with 1
        for i, (c, s) in enumerate(zip(champion, shadow, strict=True))
    ])
    o = comparison.figures()["overall"]
    assert comparison.figures()["task"] == "classification"
    assert (o["pairs"], o["compared"], o["shadow_errors"]) == (4, 4, 0)
    assert o["agreement"] == 0.75
    assert o["confusion"] == {"0": {"0": 1, "1": 1}, "1": {"1": 2}}
    assert o["label_shift"] == pytest.approx(0.25)  # champion 2:2, shadow 1:3
    assert o["diff_mean"] == pytest.approx(0.1)  # -0.2, 0.4, 0, 0.2
    assert o["abs_diff_mean"] == pytest.approx(0.2)
    assert o["abs_diff_p50"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("champion", "shadow", "agree", "diff"),
    [
        ({"probabilities": [0.2, 0.8]}, {"probabilities": [[0.6, 0.4]]}, False, -0.4),  # a row of one row
        ({"probabilities": [0.1, 0.2, 0.7]}, {"label": 2, "probabilities": [0.1, 0.4, 0.5]}, True, -0.2),  # top
        ({"label": "cat"}, {"label": ["cat"]}, True, None),  # no probabilities: no score
        ({"label": 1, "probabilities": None}, {"label": 1.0}, True, None),
    ],
)
def test_classification_output_shapes(champion: dict[str, Any], shadow: dict[str, Any], agree: bool,
                                      diff: float | None) -> None:
    o = built([pair(0, champion, shadow)]).figures()["overall"]
    assert o["compared"] == 1 and o["agreement"] == float(agree)
    assert o["diff_mean"] == (None if diff is None else pytest.approx(diff))


def test_regression_by_hand() -> None:
    comparison = built([
        pair(i, {"prediction": c}, {"prediction": [s]})  # a list of one is its value
        for i, (c, s) in enumerate([(1.0, 1.5), (2.0, 2.0), (4.0, 3.0), (0.0, 1.0)])
    ])
    o = comparison.figures()["overall"]
    assert o["diff_mean"] == pytest.approx(0.125)
    assert o["abs_diff_mean"] == pytest.approx(0.625)
    assert o["abs_diff_p50"] == pytest.approx(0.75)
    assert o["rel_diff_mean"] == pytest.approx(0.25)  # 0.5, 0, 0.25; the zero champion is left out
    assert "agreement" not in o and "overlap_at_k" not in o


def test_ranking_by_hand() -> None:
    comparison = built([
        # top-3 {1,2,3} against {4,2,3}; shared 2 and 3 in the same order: tau 1
        pair(0, {"ranking": [1, 2, 3, 9]}, {"ranking": [4, 2, 3, 1]}),
        # top-3 the same set; positions of a, b, c: (0, 1, 2) against (0, 2, 1): tau 1/3
        pair(1, {"ranking": ["a", "b", "c", "d"]}, {"ranking": ["a", "c", "b", "e"]}),
    ], k=3)
    o = comparison.figures()["overall"]
    assert comparison.task == "ranking"
    assert o["overlap_at_3"] == pytest.approx((2 / 3 + 1) / 2)
    assert o["kendall_tau"] == pytest.approx((1 + 1 / 3) / 2)
    rbo = (rank_biased_overlap([1, 2, 3, 9], [4, 2, 3, 1], k=3) + rank_biased_overlap(list("abcd"), list("acbe"), k=3)) / 2
    assert o["rbo"] == pytest.approx(rbo)


def hand_ranker(shadow_items: list[int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A champion answering items 1..10 and a shadow answering ``shadow_items`` with the very
    same scores, position by position, each as the gateway summarises it."""
    scores = [round(1.0 - i / 10, 2) for i in range(10)]
    champion = {"items": list(range(1, 11)), "scores": scores, "ranking": list(range(1, 11))}
    return champion, {"recs": shadow_items, "s": list(scores)}


def test_a_ranker_is_compared_on_its_ids_not_on_the_positions_of_its_scores() -> None:
    # the field report: overlap@10 read 100% (tau 1) where the ids overlap 40%
    champion, shadow = hand_ranker([1, 2, 3, 4, 11, 12, 13, 14, 15, 16])
    roles = {"items": "ranking", "scores": "scores"}
    comparison = built([Pair("r0", champion, shadow, 10.0, 12.0, champion_roles=roles,
                             shadow_roles={"recs": "ranking", "s": "scores"})])
    o = comparison.figures()["overall"]
    assert comparison.task == "ranking"
    assert o["overlap_at_10"] == pytest.approx(0.4)  # {1, 2, 3, 4} of 10, whatever the scores say
    assert o["kendall_tau"] == pytest.approx(1.0)  # the four shared items, in the same order
    p = 0.9  # RBO_EXT of two 10-lists: X_d = d up to depth 4, then 4
    agreement = [min(d, 4) / d for d in range(1, 11)]
    expected = 4 / 10 * p**10 + (1 - p) / p * sum(a * p**d for d, a in enumerate(agreement, start=1))
    assert o["rbo"] == pytest.approx(expected)
    assert o["rbo"] == pytest.approx(0.66414, abs=1e-5)  # 1/9 · 4.72199 + 0.4 · 0.9^10, by hand
    assert o["distribution_distance"] == 0.0  # the top scores are the same: the scores cannot tell them apart


def test_ranking_without_a_defined_correlation_still_counts_overlap() -> None:
    comparison = built([pair(0, {"ranking": [1, 2]}, {"ranking": [2, 3]})], k=10)
    figures = comparison.figures()
    o = figures["overall"]
    assert o["overlap_at_10"] == 0.5  # k capped at the longer list's length
    assert o["kendall_tau"] is None  # one shared item: no pair to order
    assert "τ needs a pair" in figures["missing"]["kendall_tau"]
    assert "role scores" in figures["missing"]["distribution_distance"]


def test_rankings_per_segment() -> None:
    comparison = built([
        pair(0, {"ranking": [1, 2, 3, 4]}, {"ranking": [1, 2, 3, 4]}, segment="us"),
        pair(1, {"ranking": [1, 2, 3, 4]}, {"ranking": [4, 3, 2, 1]}, segment="eu"),
        pair(2, {"ranking": [1, 2, 3, 4]}, {"ranking": [5, 6, 7, 8]}, segment="eu"),
    ])
    figures = comparison.figures()
    us, eu = figures["segments"]["us"], figures["segments"]["eu"]
    assert (us["overlap_at_10"], us["rbo"], us["kendall_tau"]) == (1.0, 1.0, 1.0)
    assert eu["overlap_at_10"] == 0.5 and eu["kendall_tau"] == -1.0  # only the reversed pair has a tau
    assert eu["rbo"] == pytest.approx(rank_biased_overlap([1, 2, 3, 4], [4, 3, 2, 1]) / 2)
    assert figures["worst_segment"] == {"segment": "eu", "by": "overlap_at_10", "value": 0.5,
                                        "overall": pytest.approx(2 / 3), "pairs": 2}


@pytest.mark.parametrize("items", [5, 40, 150])
def test_kendall_tau_is_the_shared_items_tau(items: int) -> None:
    rng = np.random.default_rng(items)
    a, b = rng.permutation(items * 2)[:items].tolist(), rng.permutation(items * 2)[:items].tolist()
    o = built([pair(0, {"ranking": a}, {"ranking": b})], k=items).figures()["overall"]
    assert o["kendall_tau"] == pytest.approx(kendall_tau_shared(a, b, items))


def test_outputs_are_matched_by_role_not_by_name_or_shape() -> None:
    # an ONNX regressor's [-1, 1] output "variable" against a skops regressor's [-1] "prediction"
    comparison = built([Pair(f"r{i}", {"variable": [c]}, {"prediction": s}, 10.0, 12.0,
                             champion_roles={"variable": "prediction"}, shadow_roles={"prediction": "prediction"})
                        for i, (c, s) in enumerate([(1.0, 1.5), (2.0, 2.0)])])
    figures = comparison.figures()
    assert figures["task"] == "regression" and figures["overall"]["compared"] == 2
    assert figures["overall"]["abs_diff_mean"] == pytest.approx(0.25)
    assert figures["missing"] == {}
    # a classifier whose label is named otherwise
    c = built([Pair("r", {"label": 1}, {"cls": [1]}, 1.0, 1.0, shadow_roles={"cls": "label"})]).figures()
    assert c["overall"]["agreement"] == 1.0


def test_a_shadow_answer_without_the_role_is_an_invalid_answer_and_says_why() -> None:
    comparison = built([pair(0, {"prediction": 1.0}, {"other": "x"})])
    figures = comparison.figures()
    assert figures["overall"]["errors_by_kind"] == {"invalid": 1}
    assert "shadow: no output of role prediction (1)" in figures["missing"]["abs_diff_mean"]


def test_a_champion_answer_without_a_role_is_counted_not_compared() -> None:
    figures = built([pair(0, {"scores": [0.2, 0.1]}, {"scores": [0.1, 0.2]})]).figures()
    o = figures["overall"]
    assert figures["task"] is None and (o["pairs"], o["compared"], o["shadow_errors"]) == (1, 0, 0)
    assert "no output the shadow compares" in figures["missing"]["task"]


def test_missing_says_why_for_every_figure_without_a_value() -> None:
    empty = Comparison().figures()["missing"]
    assert set(empty.values()) == {"no pairs yet"}
    timeouts = built([pair(i, {"prediction": 1.0}, None, error="timeout", shadow_ms=None) for i in range(3)])
    figures = timeouts.figures()
    missing = figures["missing"]
    assert missing["shadow_latency_p50_ms"] == "no shadow call finished (3 timeouts)"
    assert missing["latency_ratio"] == "no shadow call finished (3 timeouts)"
    assert missing["abs_diff_mean"] == "no pair compared of 3: 3 shadow errors (timeout 3)"
    assert {name for name, value in figures["overall"].items() if value is None} <= set(missing)
    zero = built([pair(0, {"prediction": 0.0}, {"prediction": 1.0})]).figures()["missing"]
    assert zero["rel_diff_mean"].startswith("the champion predicted exactly 0")


@pytest.mark.parametrize(
    ("shadow", "error", "kind"),
    [
        (None, "timeout", "timeout"),
        (None, "error: ValueError: shapes", "error"),
        (None, None, "error"),
        ({"prediction": float("nan")}, None, "invalid"),
        ({"other": "x"}, None, "invalid"),
        ({"prediction": 1.0}, "invalid: NaN", "invalid"),
    ],
)
def test_shadow_errors_by_kind(shadow: dict[str, Any] | None, error: str | None, kind: str) -> None:
    comparison = built([
        pair(0, {"prediction": 1.0}, {"prediction": 1.0}),
        pair(1, {"prediction": 1.0}, shadow, error=error, shadow_ms=None),
    ])
    o = comparison.figures()["overall"]
    assert (o["pairs"], o["compared"], o["shadow_errors"]) == (2, 1, 1)
    assert o["errors_by_kind"] == {kind: 1}
    assert o["candidate_error_rate"] == 0.5
    assert o["timeouts"] == (kind == "timeout")
    assert o["abs_diff_mean"] == 0.0  # only the answered pair is compared


def test_a_nan_probability_is_an_invalid_answer() -> None:
    comparison = built([pair(0, {"label": 1, "probabilities": [[0.2, 0.8]]},
                             {"label": 1, "probabilities": [[float("nan"), 0.8]]})])
    assert comparison.figures()["overall"]["errors_by_kind"] == {"invalid": 1}


def test_latency_and_distribution_by_hand() -> None:
    comparison = built([
        pair(i, {"prediction": float(i)}, {"prediction": float(i + 1)}, champion_ms=c, shadow_ms=s)
        for i, (c, s) in enumerate([(10.0, 20.0), (20.0, 40.0), (30.0, 60.0)])
    ] + [pair(3, {"prediction": 0.0}, None, champion_ms=20.0, shadow_ms=None, error="timeout")])
    o = comparison.figures()["overall"]
    assert o["champion_latency_mean_ms"] == 20.0
    assert o["champion_latency_p50_ms"] == 20.0
    assert o["shadow_latency_mean_ms"] == 40.0  # the timeout has no latency
    assert o["latency_ratio"] == 2.0
    assert o["distribution_distance"] == pytest.approx(1.0)  # {0,1,2} against {1,2,3}
    assert o["ks_statistic"] == pytest.approx(1 / 3)
    assert o["timeout_rate"] == 0.25


def test_empty_comparison_has_figures_and_no_task() -> None:
    figures = Comparison().figures()
    assert figures["task"] is None and figures["overall"]["pairs"] == 0
    assert figures["overall"]["latency_ratio"] is None
    assert figures["worst_segment"] is None and figures["slowest_segment"] is None
    json.dumps(figures, allow_nan=False)


def traffic(n: int, seed: int = 1) -> list[Pair]:
    """Classification traffic where the shadow is off only for "eu", and slower there."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        segment = rng.choice(["eu", "us", "asia", None])
        p = rng.random()
        q = 1 - p if segment == "eu" and rng.random() < 0.5 else min(1.0, p + 0.01)
        slow = 3.0 if segment == "eu" else 1.0
        error = "timeout" if rng.random() < 0.02 else None
        out.append(pair(i, {"label": int(p > 0.5), "probabilities": [[1 - p, p]]},
                        None if error else {"label": int(q > 0.5), "probabilities": [[1 - q, q]]},
                        champion_ms=rng.uniform(5, 15), shadow_ms=None if error else slow * rng.uniform(5, 15),
                        error=error, segment=segment))
    return out


def counts(comparison: Comparison) -> dict[str, Any]:
    data = comparison.to_dict()
    slices = {"": data["overall"], **data["segments"]}
    return {name: (s["seen"], s["kinds"], s["confusion"], {k: round(v, 6) for k, v in s["n"].items()})
            for name, s in slices.items()}


def test_merging_halves_gives_the_counts_and_figures_of_the_whole() -> None:
    pairs = traffic(600)
    whole = built(pairs)
    merged = built(pairs[:250]).merge(built(pairs[250:], seed=7))
    assert counts(merged) == counts(whole)
    assert rounded(merged.figures()) == rounded(whole.figures())  # sums add up in another order


def rounded(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v) for v in x]
    return round(x, 9) if isinstance(x, float) else x


def test_merging_keeps_exact_counts_when_samples_are_capped() -> None:
    pairs = traffic(3000)
    whole = built(pairs, sample_size=200)
    merged = built(pairs[:1000], sample_size=200).merge(built(pairs[1000:], sample_size=200))
    assert counts(merged) == counts(whole)
    assert len(merged.to_dict()["overall"]["rows"]) == 200
    assert merged.figures()["overall"]["agreement"] == whole.figures()["overall"]["agreement"]


def test_merge_changes_neither_input_and_refuses_mismatches() -> None:
    a, b = built(traffic(50)), built(traffic(50, seed=2))
    before = (json.dumps(a.to_dict()), json.dumps(b.to_dict()))
    merged = a.merge(b)
    merged.add(traffic(1)[0])
    assert (json.dumps(a.to_dict()), json.dumps(b.to_dict())) == before
    assert merged.pairs == 101
    with pytest.raises(ValueError, match="k=10 and k=5"):
        a.merge(Comparison(k=5))
    with pytest.raises(ValueError, match="regression"):
        a.merge(built([pair(0, {"prediction": 1.0}, {"prediction": 1.0})]))
    assert Comparison().merge(a).task == "classification"


def test_to_dict_round_trips_through_json_and_stays_bounded() -> None:
    comparison = built(traffic(400))
    data = json.loads(json.dumps(comparison.to_dict(), allow_nan=False))
    again = Comparison.from_dict(data)
    assert counts(again) == counts(comparison)
    assert again.figures()["overall"]["agreement"] == comparison.figures()["overall"]["agreement"]
    again.add(traffic(1)[0])
    assert again.pairs == 401
    with pytest.raises(ValueError, match="format"):
        Comparison.from_dict({**data, "format": 99})

    rng = random.Random(3)
    many = Comparison(sample_size=300)
    for i in range(5000):  # many segments and many labels: folded, never unbounded
        many.add(pair(i, {"label": f"c{rng.randrange(100)}"}, {"label": f"c{rng.randrange(100)}"},
                      segment=f"s{rng.randrange(100)}"))
    data = many.to_dict()
    assert len(data["segments"]) <= MAX_SEGMENTS and sum(s["seen"] for s in data["segments"].values()) == 5000
    assert len(data["overall"]["rows"]) == 300
    assert len(data["overall"]["confusion"]) <= 30
    assert sum(sum(row.values()) for row in data["overall"]["confusion"].values()) == 5000
    assert len(json.dumps(data)) < 400_000


def test_a_candidate_worse_on_one_segment_shows_and_fails_there() -> None:
    figures = built(traffic(2000)).figures()
    assert figures["overall"]["agreement"] > 0.85
    assert figures["segments"]["eu"]["agreement"] < 0.7
    assert all(figures["segments"][s]["agreement"] > 0.95 for s in ("us", "asia"))
    assert figures["worst_segment"]["segment"] == "eu" and figures["worst_segment"]["by"] == "agreement"
    assert figures["slowest_segment"]["segment"] == "eu"
    assert figures["slowest_segment"]["latency_ratio"] > 2
    verdict = judge_shadow(figures, {"agreement": {"min": 0.85}, "worst_segment_agreement": {"min": 0.85}})
    assert verdict["verdict"] == "fail"
    overall, segment = verdict["checks"]
    assert overall["passed"] and not segment["passed"]
    assert "'eu'" in segment["reason"]


def regression_figures(n: int, noise: float) -> dict[str, Any]:
    return built([pair(i, {"prediction": float(i)}, {"prediction": i + noise}) for i in range(n)]).figures()


@pytest.mark.parametrize(
    ("figures", "require", "verdict", "passed"),
    [
        (regression_figures(10, 0.1), {"abs_diff_mean": {"max": 0.2}}, "pass", [True]),
        (regression_figures(10, 0.5), {"abs_diff_mean": {"max": 0.2}}, "fail", [False]),
        (regression_figures(10, 0.1), {"pairs": {"min": 5, "max": 20}, "candidate_error_rate": {"max": 0.001}},
         "pass", [True, True, True]),
        (regression_figures(10, 0.1), {"pairs": {"min": 100}}, "fail", [False]),
        (regression_figures(10, 0.1), {}, "pass", []),
        (regression_figures(0, 0.1), {"abs_diff_mean": {"max": 0.2}}, "inconclusive", [None]),
        (regression_figures(10, 0.1), {"agreement": {"min": 0.9}}, "fail", [False]),  # not measured
        (regression_figures(10, 0.1), {"latency_ratio": Requirement(max=1.5)}, "pass", [True]),
    ],
)
def test_judge_shadow(figures: dict[str, Any], require: dict[str, Any], verdict: str,
                      passed: list[bool | None]) -> None:
    result = judge_shadow(figures, require)
    assert result["verdict"] == verdict
    assert [c["passed"] for c in result["checks"]] == passed
    assert result["pairs"] == figures["overall"]["pairs"]
    for check in result["checks"]:
        assert set(check) == {"name", "rule", "figure", "passed", "reason"} and check["reason"]
    json.dumps(result, allow_nan=False)


def test_judge_explains_what_it_cannot_check() -> None:
    figures = regression_figures(10, 0.1)
    assert judge_shadow(figures, {"agreement": {"min": 0.9}})["checks"][0]["reason"] == (
        "not measured for a regression shadow")
    assert judge_shadow(figures, {"abs_diff_mean": {"max": 0.2}})["checks"][0]["rule"] == "abs_diff_mean <= 0.2"
    assert judge_shadow(figures["overall"], {"abs_diff_mean": {"max": 0.2}})["verdict"] == "pass"  # flat figures


@pytest.mark.parametrize(
    ("require", "message"),
    [
        ({"agreemnt": {"min": 0.9}}, "unknown shadow figure 'agreemnt'; known: pairs"),
        ({"worst_segment_nope": {"min": 0.9}}, "worst_segment_nope"),
        ({"agreement": {"not_worse_than": "champion"}}, "takes min and/or max"),
        ({"agreement": {}}, "takes min and/or max"),
    ],
)
def test_judge_rejects_what_it_cannot_read(require: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        judge_shadow(regression_figures(3, 0.1), require)


def test_known_figures_are_the_figures_produced() -> None:
    produced: set[str] = set()
    for pairs in (traffic(50), [pair(0, {"prediction": 1.0}, {"prediction": 2.0})],
                  [pair(0, {"items": [1, 2, 3], "scores": [0.3, 0.2, 0.1]},
                        {"items": [2, 1, 3], "scores": [0.4, 0.2, 0.1]})]):
        overall = built(pairs).figures()["overall"]
        produced |= {k for k, v in overall.items() if not isinstance(v, dict)}
        assert all(v is None or math.isfinite(v) for v in overall.values() if not isinstance(v, dict))
    assert produced == set(KNOWN_FIGURES)
