from __future__ import annotations

import random
from html.parser import HTMLParser
from typing import Any

import pytest

from changeover.domain.comparison import Comparison, Pair
from changeover.domain.shadow_judgement import coverage, judge_shadow
from changeover.evaluation.shadow_report import render_shadow_html, summary_rows


class Page(HTMLParser):
    """Collects what the tests look at, and checks that every opened tag closes in order."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert not page.open
    return page


def comparison(task: str, n: int = 300, segments: tuple[str, ...] = ("eu", "us")) -> Comparison:
    rng = random.Random(0)
    out = Comparison()
    for i in range(n):
        segment = segments[i % len(segments)] if segments else None
        x = rng.random()
        y = x + rng.gauss(0, 0.05) * (4 if segment == segments[0] else 1) if segments else x
        if task == "classification":
            champion = {"label": int(x > 0.5), "probabilities": [[1 - x, x]]}
            shadow = {"label": int(y > 0.5), "probabilities": [[1 - y, y]]}
        elif task == "regression":
            champion, shadow = {"prediction": 10 * x}, {"prediction": 10 * y}
        else:
            items = rng.sample(range(20), 3)
            champion = {"items": items, "scores": sorted([x, 1 - x, rng.random()], reverse=True)}
            shadow = {"items": items[:2] + [20 + i % 3], "scores": sorted([y, 1 - x, rng.random()], reverse=True)}
        error = "timeout" if i % 50 == 7 else None
        out.add(Pair(f"r{i}", champion, None if error else shadow, rng.uniform(5, 10),
                     None if error else rng.uniform(6, 14), error, segment))
    return out


@pytest.mark.parametrize("task", ["classification", "regression", "ranking"])
def test_report_renders_plots_and_verdict(task: str) -> None:
    figures = comparison(task).figures()
    verdict = judge_shadow(figures, {"candidate_error_rate": {"max": 0.001}, "latency_ratio": {"max": 3}})
    html = render_shadow_html("ranker", 1, 2, figures, verdict)
    page = parse(html)
    text = " ".join(page.text)
    assert len(page.images) == 3  # scores, per segment, latency
    assert all((img["src"] or "").startswith("data:image/png;base64,") for img in page.images)
    assert "Verdict: FAIL (1 of 2 checks passed)" in text
    assert "candidate_error_rate <= 0.001" in text
    assert "Shadow report: ranker" in text and "version 2" in text.lower()
    assert "eu" in text and "worst segment" in text
    assert "http" not in html.replace("https://", "").split("<body>")[1]  # no external assets
    assert ("Who said what" in text) == (task == "classification")


def test_report_without_pairs_or_verdict() -> None:
    page = parse(render_shadow_html("m", 1, 2, Comparison().figures(), None))
    text = " ".join(page.text)
    assert page.images == []
    assert "No verdict yet" in text and "No pairs yet" in text


def test_report_without_segments_and_inconclusive() -> None:
    figures = comparison("regression", n=40, segments=()).figures()
    empty = judge_shadow(Comparison().figures(), {"abs_diff_mean": {"max": 1}})
    page = parse(render_shadow_html("m", 3, 4, figures, empty))
    assert len(page.images) == 2  # scores and latency; no segment chart
    assert "Verdict: INCONCLUSIVE" in " ".join(page.text)


def test_report_escapes_what_it_is_given() -> None:
    c = Comparison()
    for i in range(5):
        c.add(Pair(str(i), {"label": "<b>"}, {"label": "$x$"}, 1.0, 2.0, segment="<script>$a$"))
    html = render_shadow_html("<model>", 1, 2, c.figures(), judge_shadow(c.figures(), {"agreement": {"min": 0.5}}))
    assert "<script>" not in html and "<model>" not in html and "<b>" not in html
    page = parse(html)
    assert "<script>$a$" in " ".join(page.text)
    assert len(page.images) == 2  # no scores without probabilities


def rows_of(figures: dict[str, Any]) -> dict[str, str]:
    rows = summary_rows(figures)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in rows)
    return dict(rows)


def test_summary_rows_classification() -> None:
    rows = rows_of(comparison("classification").figures())
    assert rows["task"] == "classification"
    assert rows["pairs"].startswith("300 (294 answered by both)")
    assert rows["shadow error rate"] == "2.00% (6 errors, 6 timeouts)"
    assert rows["agreement"].endswith("%")
    assert rows["worst segment"].startswith("eu: agreement")
    assert rows["latency p50, shadow vs champion"].count("ms") == 2 and "×" in rows["latency p50, shadow vs champion"]
    assert "slowest segment" in rows


def test_summary_rows_ranking_and_regression_and_empty() -> None:
    ranking = rows_of(comparison("ranking").figures())
    assert ranking["overlap@10 (item ids)"] == "66.67%"  # two of three items kept
    assert "rank-biased overlap (RBO, p 0.9)" in ranking and "Kendall τ on the shared items" in ranking
    regression = rows_of(comparison("regression").figures())
    assert "prediction difference, mean |Δ|" in regression and "relative difference, mean" in regression
    empty = rows_of(Comparison().figures())
    assert empty["task"] == "not known yet" and empty["pairs"].startswith("0 ")
    assert "worst segment" not in empty


def dropped_most() -> dict[str, Any]:
    """The field report's shadow: 600 calls mirrored at sample 1.0, 262 pairs, 338 dropped."""
    c = Comparison()
    for i in range(262):
        c.add(Pair(f"r{i}", {"prediction": float(i)}, {"prediction": float(i)}, 5.0, 6.0))
    figures = c.figures()
    counts = {"ok": 262, "pool_busy": 300, "queue_full": 38}
    figures["mirror"] = coverage(figures["overall"], counts) | {"sample": 1.0}
    return figures


def test_the_report_states_mirrored_compared_and_dropped_by_cause() -> None:
    figures = dropped_most()
    rows = rows_of(figures)
    assert rows["mirrored"] == "600 calls at sample 1"
    assert rows["compared"] == "262 (43.67% of mirrored)"
    assert rows["dropped"] == "338: pool busy 300, queue full 38"
    verdict = judge_shadow(figures, {"abs_diff_mean": {"max": 0.1}})
    assert verdict["verdict"] == "inconclusive"
    text = " ".join(parse(render_shadow_html("m", 1, 2, figures, verdict)).text)
    assert "Verdict: INCONCLUSIVE" in text and "only 262 of 600 mirrored calls compared (43.7%)" in text
    assert "Mirrored calls not compared" in text and "pool busy" in text


def test_the_report_says_why_a_figure_is_missing() -> None:
    c = Comparison()
    for i in range(5):  # rankings without scores: nothing to draw a score distribution from
        c.add(Pair(f"r{i}", {"ranking": [1, 2, 3]}, {"ranking": [3, 4, 5]}, 5.0, 6.0))
    figures = c.figures()
    rows = rows_of(figures)
    assert rows["no kendall_tau"].startswith("no compared pair shares two items")
    assert "role scores" in rows["no distribution_distance, ks_statistic"]
    text = " ".join(parse(render_shadow_html("m", 1, 2, figures, None)).text)
    assert "Missing figures" in text and "distribution_distance, ks_statistic" in text
