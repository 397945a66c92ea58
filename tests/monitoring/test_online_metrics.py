"""Online metrics from feedback: the gate's metrics per version, over requests whose label had
time to arrive; and the figures over time that the charts read."""

from __future__ import annotations

import math
import time

import pytest
from monhelpers import add_feedback, add_request, add_window, push

from changeover.monitoring.online import online_metrics, online_report, predicted_number, wilson
from changeover.monitoring.timeseries import agrees, choose_step, parse_since, timeseries, weighted_quantile
from changeover.store.store import Store


def test_wilson_interval_by_hand() -> None:
    lo, hi = wilson(8, 10) or (0, 0)
    # p = 0.8, n = 10, z = 1.96: centre 0.7167, half-width 0.2265
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 0) is None


def test_classification_regression_and_rewards() -> None:
    rows = [
        {"version": 1, "output": {"label": 1, "probabilities": [0.2, 0.8]}, "label": 1, "reward": None},
        {"version": 1, "output": {"label": 0}, "label": "1", "reward": None},  # "1" and 1 are one label
        {"version": 1, "output": {"label": 1}, "label": "1", "reward": 1.0},
        {"version": 1, "output": {"label": 0}, "label": None, "reward": 0.0},
        {"version": 2, "output": {"prediction": 2.5}, "label": 2.0, "reward": None},
        {"version": 2, "output": {"prediction": 4.0}, "label": 5.0, "reward": None},
        {"version": 3, "output": {"y": [1.5]}, "label": None, "reward": None},
    ]
    by_version = online_metrics(rows)
    one, two, three = by_version[1], by_version[2], by_version[3]
    assert one["task"] == "classification" and one["labelled"] == 3 and one["requests"] == 4
    assert one["metrics"]["accuracy"] == pytest.approx(2 / 3) and one["metrics"]["recall"] == pytest.approx(2 / 3)
    assert one["mean_reward"] == 0.5 and one["rewards"] == 2
    assert two["task"] == "regression" and two["metrics"]["mae"] == pytest.approx(0.75)
    assert two["metrics"]["rmse"] == pytest.approx(math.sqrt((0.25 + 1) / 2))
    assert three["task"] is None and three["metrics"] == {} and three["label_coverage"] == 0


def test_one_regression_row_has_no_r2() -> None:
    figures = online_metrics([{"version": 1, "output": {"prediction": 1.0}, "label": 3.0, "reward": None}])[1]
    assert figures["metrics"] == {"mae": 2.0, "rmse": 2.0, "r2": None, "mape": None}


def test_predicted_number_prefers_prediction() -> None:
    assert predicted_number({"score": 0.1, "prediction": [2.0]}) == 2.0
    assert predicted_number({"name": "x", "score": 0.1}) == 0.1
    assert predicted_number({"name": "x"}) is None


def test_only_requests_whose_label_had_time_to_arrive(store: Store) -> None:
    push(store, "m", 1)
    now = time.time()
    old = add_request(store, "m", 1, now - 1000, output={"label": 1})
    recent = add_request(store, "m", 1, now - 10, output={"label": 1})
    add_feedback(store, old, "m", now - 900, now - 1000, label=1)
    add_feedback(store, recent, "m", now - 5, now - 10, label=0)
    report = online_report(store, "m", window_s=3600, label_delay_s=60, now=now)
    figures = report["versions"]["1"]
    assert figures["requests"] == 1 and figures["metrics"]["accuracy"] == 1.0
    assert report["until"] == pytest.approx(now - 60)
    everything = online_report(store, "m", window_s=3600, now=now)["versions"]["1"]
    assert everything["requests"] == 2 and everything["metrics"]["accuracy"] == 0.5


def test_weighted_quantile() -> None:
    assert weighted_quantile([1, 2, 3, 4], [1, 1, 1, 1], 0.5) == 2
    assert weighted_quantile([1, 100], [99, 1], 0.99) == 1  # the heavy window dominates
    assert weighted_quantile([1, 100], [98, 2], 0.99) == 100
    assert weighted_quantile([], [], 0.5) is None


@pytest.mark.parametrize(
    ("champion", "shadow", "same"),
    [
        ({"label": 1, "probabilities": [0.1, 0.9]}, {"label": 1, "probabilities": [0.3, 0.7]}, True),
        ({"label": 1}, {"label": 0}, False),
        ({"prediction": 1.0}, {"prediction": 1.00001}, True),
        ({"prediction": 1.0}, {"prediction": 1.1}, False),
        ({"prediction": 1.0}, None, None),
        ({"name": "a"}, {"name": "a"}, True),
    ],
)
def test_agreement(champion: dict, shadow: dict | None, same: bool | None) -> None:
    assert agrees(champion, shadow) is same


def test_since_and_step() -> None:
    assert parse_since("15m", 10_000.0) == 10_000.0 - 900
    assert parse_since("1700000000", 0.0) == 1_700_000_000.0
    assert parse_since(None, 1000.0, default_s=100) == 900.0
    assert choose_step(900) == 15 and choose_step(3600) == 60 and choose_step(900, "30s") == 30
    assert choose_step(86400, "1s") == 120  # never more than 720 buckets


def test_timeseries_per_version_and_bucket(store: Store) -> None:
    push(store, "m", 1)
    push(store, "m", 2)
    since = 1_000_000.0
    add_window(store, "m", 1, since, since + 5, requests=100, errors=2, latencies=[1.0] * 9 + [40.0], predictions=[0.2])
    add_window(store, "m", 1, since + 5, since + 9, requests=100, errors=0, latencies=[3.0], replica="r2")
    add_window(store, "m", 2, since + 12, since + 15, requests=10, errors=5, latencies=[9.0], predictions=[0.8, 0.6])
    r1 = add_request(store, "m", 1, since + 1, output={"label": 1})
    r2 = add_request(store, "m", 2, since + 11, output={"label": 0})
    add_feedback(store, r1, "m", since + 2, since + 1, label=1)
    add_feedback(store, r2, "m", since + 12, since + 11, label=1)
    series = timeseries(store, "m", since=since, until=since + 20, step=10)
    assert series["buckets"] == [since, since + 10]
    one, two = series["versions"]["1"], series["versions"]["2"]
    assert one["requests"] == [200, 0] and one["errors"] == [2, 0] and one["error_rate"] == [0.01, None]
    assert one["rps"] == [20.0, 0.0]
    # each window's sample counts for the requests it answered: 98 at 1..40 ms, 100 at 3 ms
    assert one["latency_p50_ms"][0] == 3.0 and one["latency_p99_ms"][0] == 40.0
    assert two["error_rate"] == [None, 0.5] and two["mean_prediction"] == [None, pytest.approx(0.7)]
    assert series["online_metric"] == "accuracy"
    assert one["online"] == [1.0, None] and two["online"] == [None, 0.0]


def test_a_busy_bucket_reads_the_samples_of_a_few_windows(store: Store) -> None:
    push(store, "m", 1)
    since = 2_000_000.0
    for i in range(10):
        add_window(store, "m", 1, since + i, since + i + 0.5, requests=10, errors=i % 2, latencies=[float(i)])
    series = timeseries(store, "m", since=since, until=since + 60, step=60)["versions"]["1"]
    assert series["requests"] == [100] and series["errors"] == [5]  # counts from every window
    assert series["latency_p50_ms"][0] in {0.0, 2.0, 5.0, 7.0}  # samples from 4 windows spread evenly


def test_timeseries_of_a_ranker_is_its_online_ndcg_at_10(store: Store) -> None:
    push(store, "recs", 1)
    push(store, "recs", 2)
    since = 3_000_000.0
    served = [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010]
    first = add_request(store, "recs", 1, since + 1, output={"ranking": served})
    third = add_request(store, "recs", 1, since + 2, output={"ranking": served})
    unclicked = add_request(store, "recs", 1, since + 3, output={"ranking": served})
    last = add_request(store, "recs", 2, since + 11, output={"ranking": served[::-1]})
    add_feedback(store, first, "recs", since + 4, since + 1, label=[1001])  # NDCG@10 1
    add_feedback(store, third, "recs", since + 4, since + 2, label=["1003"])  # 1 / log2(4) = 0.5
    add_feedback(store, unclicked, "recs", since + 4, since + 3, label=[])  # no click: NDCG undefined
    add_feedback(store, last, "recs", since + 12, since + 11, label={"1001": 1})  # rank 10: 1 / log2(11)
    series = timeseries(store, "recs", since=since, until=since + 20, step=10)
    assert series["online_metric"] == "ndcg_at_10"  # not MAE, as before
    one, two = series["versions"]["1"], series["versions"]["2"]
    assert one["online"] == [pytest.approx(0.75), None] and one["labelled"] == [2, 0]
    assert two["online"] == [None, pytest.approx(1 / math.log2(11))] and two["labelled"] == [0, 1]
