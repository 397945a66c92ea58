from __future__ import annotations

import base64
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from changeover.evaluation.gate import GateResult, PredictionBatch, run_gate
from changeover.evaluation.report import render_html

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Collector:
    c = Collector()
    c.feed(html)
    c.close()
    return c


def images(c: Collector) -> list[bytes]:
    out = []
    for tag, attrs in c.tags:
        if tag == "img":
            src = attrs["src"] or ""
            assert src.startswith("data:image/png;base64,")
            out.append(base64.b64decode(src.split(",", 1)[1]))
    return out


def no_external_assets(c: Collector) -> None:
    for _, attrs in c.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            assert value is None or value.startswith("data:")


def classification_result(champion: bool = True) -> GateResult:
    data = load_breast_cancer(as_frame=True).frame
    train, test = data.iloc[:250], data.iloc[250:]
    x, y = train.drop(columns="target").to_numpy(), train["target"]
    good = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    weak = DummyClassifier(strategy="prior").fit(x, y)

    def wrap(m: Any) -> Any:
        return lambda b: PredictionBatch(
            m.predict(b.to_numpy()), m.predict_proba(b.to_numpy()), m.classes_
        )

    return run_gate(
        task="classification",
        data=test,
        target="target",
        champion=wrap(weak) if champion else None,
        candidate=wrap(good),
        require={
            "roc_auc": {"better_than": "champion"},
            "latency_p99_ms": {"max": 0.0},  # fails on purpose
        },
        n_boot=100,
        batch_size=64,
    )


def test_classification_report_has_verdict_tables_and_figures() -> None:
    result = classification_result()
    html = render_html(result, model="<cancer>", champion_label="v1", candidate_label="v2 & co")
    c = parse(html)
    text = " ".join(c.text)
    assert "Verdict: FAIL" in text
    assert "&lt;cancer&gt;" in html and "<cancer>" not in html  # escaped
    assert "v2 &amp; co" in html
    assert "roc_auc better than champion" in text
    assert any(tag == "table" for tag, _ in c.tags)
    pngs = images(c)
    # forest plot, latency, calibration, prediction differences
    assert len(pngs) == 4
    assert all(p.startswith(PNG_MAGIC) for p in pngs)
    no_external_assets(c)
    assert html.lstrip().startswith("<!DOCTYPE html>")


def test_first_version_report() -> None:
    result = classification_result(champion=False)
    c = parse(render_html(result, model="m", champion_label="-", candidate_label="v1"))
    assert "no champion" in " ".join(c.text)
    assert len(images(c)) == 2  # latency and calibration; nothing to compare


def test_regression_and_ranking_reports() -> None:
    data = load_diabetes(as_frame=True).frame
    train, test = data.iloc[:300], data.iloc[300:]
    model = Ridge().fit(train.drop(columns="target"), train["target"])

    def ridge(b: pd.DataFrame) -> PredictionBatch:
        return PredictionBatch(values=model.predict(b))

    def mean(b: pd.DataFrame) -> PredictionBatch:
        return PredictionBatch(values=np.full(len(b), float(train["target"].mean())))

    reg = run_gate(
        task="regression",
        data=test,
        target="target",
        champion=mean,
        candidate=ridge,
        require={"rmse": {"better_than": "champion"}},
        n_boot=100,
    )
    c = parse(render_html(reg, model="diabetes", champion_label="mean", candidate_label="ridge"))
    assert "Verdict: PASS" in " ".join(c.text)
    assert len(images(c)) == 4  # forest, latency, residuals, differences

    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"f": rng.normal(size=n), "g": rng.normal(size=n)})
    frame["q"] = np.repeat(np.arange(40), 10)
    frame["rel"] = (frame["f"] > 0.5).astype(int)
    rank = run_gate(
        task="ranking",
        data=frame,
        target="rel",
        query_column="q",
        champion=lambda b: PredictionBatch(values=b["g"].to_numpy()),
        candidate=lambda b: PredictionBatch(values=b["f"].to_numpy()),
        require={"ndcg_at_5": {"better_than": "champion"}},
        n_boot=100,
    )
    c = parse(render_html(rank, model="ranker", champion_label="6", candidate_label="7"))
    assert len(images(c)) == 4  # forest, latency, per-query NDCG, differences
