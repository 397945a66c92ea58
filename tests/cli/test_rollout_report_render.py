"""The rollout report's renderer on data from a real rollout (data/rollout_promoted.json: what
`GET /api/rollouts/{id}` and `GET /api/models/m/timeseries` answered after report_road.py's
road, gate → shadow → 20% → 50% → promote → watch), and the road read from events, table-driven."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from changeover.cli.rollout_report import render_report, terminal_summary
from changeover.cli.rollout_road import decisions, looks, road, weights

DATA = json.loads((Path(__file__).parent / "data" / "rollout_promoted.json").read_text())
ROLLOUT, SERIES = DATA["rollout"], DATA["timeseries"]
SPEC = {"model": "m", "candidate": "2", "gate": {"task": "classification"}, "shadow": {"sample": 1.0},
        "canary": {"steps": [20, 50]}}


class Tags(HTMLParser):
    """Every start tag with its attributes, and whether the tags balance."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "path", "use", "rect", "circle", "line", "polyline", "stop"}

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()


def test_the_road_of_a_real_rollout() -> None:
    stages = road(ROLLOUT)
    assert [(s.key, s.state) for s in stages] == [
        ("compat", "passed"), ("gate", "passed"), ("shadow", "passed"), ("step-1", "passed"), ("step-2", "passed"),
        ("promote", "passed"), ("watch", "passed")]
    starts = [s.started for s in stages]
    assert all(a is not None and b is not None and a <= b for a, b in zip(starts, starts[1:], strict=False))
    assert all(s.ended is not None and s.started is not None and s.ended >= s.started for s in stages)
    step1, step2 = stages[3], stages[4]
    assert (step1.weight, step2.weight) == (20.0, 50.0)
    assert step1.analysis is not None and step1.analysis["evidence"]["step"] == 0
    assert step2.analysis is not None and step2.analysis["evidence"]["step"] == 1
    assert step1.decision is not None and step1.decision["kind"] == "step.passed"
    assert "step 1 of 2 (20%) passed" in step1.decision["message"]
    assert stages[1].analysis is not None and stages[1].analysis["evidence"]["rules"]

    found = looks(ROLLOUT)
    assert [(x.kind, x.step, x.acted) for x in found] == [("canary", 0, True), ("canary", 1, True), ("watch", 1, True)]
    assert all(c["low"] <= c["estimate"] <= c["high"] for x in found[:2] for c in x.checks if c["name"] == "error_rate")
    # the candidate's share, as the policies gave it: none in the shadow, 20, 50, 98 (2% held back), 100
    assert [w for _, w in weights(ROLLOUT)] == [0.0, 20.0, 50.0, 98.0, 100.0]
    kinds = [e["kind"] for e in decisions(ROLLOUT["events"])]
    assert "policy" not in kinds and "analysis" not in kinds and kinds[0] == "compat.passed"


@pytest.fixture(scope="module")
def page() -> str:
    return render_report(ROLLOUT, SERIES)  # a few seconds: drawn once for the tests that read it


def test_the_page_is_whole_and_self_contained(page: str) -> None:
    parser = Tags()
    parser.feed(page)
    parser.close()
    assert parser.open == ["html"] or parser.open == [], parser.open
    tags = parser.tags
    # nothing is fetched: no script, stylesheet or image from anywhere, no link out
    assert not [t for t, a in tags if t in ("script", "link", "img", "iframe", "object", "embed")]
    for _tag, attrs in tags:
        for name in ("src", "href", "xlink:href", "action"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value), (name, value)
    assert "@import" not in page and "url(http" not in page
    ids = {a.get("id") for _, a in tags}
    for chart in ("chart-traffic", "chart-errors", "chart-latency", "chart-online", "chart-judge-error_rate",
                  "chart-judge-label_accuracy"):
        assert chart in ids, chart
    assert sum(t == "svg" for t, _ in tags) == 6
    assert len([i for i in ids if i]) == len([a.get("id") for _, a in tags if a.get("id")]), "an id used twice"
    # every stage, with its state, and every decision with its evidence
    stages = {a["data-stage"]: a["class"] for t, a in tags if t == "li" and "data-stage" in a}
    assert stages == {k: "passed" for k in ("compat", "gate", "shadow", "step-1", "step-2", "promote", "watch")}
    events = [a["data-kind"] for t, a in tags if t == "tr" and a.get("class") == "event"]
    assert events == [e["kind"] for e in sorted(ROLLOUT["events"], key=lambda e: (e["at"], e["id"]))]
    assert page.count("<details>") == len(events)
    for text in ("step 1 of 2 (20%)", "step 2 of 2 (50%)", "accuracy not worse than champion by more than 0.05",
                 "agreement", "promoted", "the offline gate passed", "the shadow passed after"):
        assert text in page, text


def test_the_gate_table_carries_each_rule_with_its_interval(page: str) -> None:
    gate = page[page.index('<section id="gate">'):page.index('<section id="shadow">')]
    rule = ROLLOUT["analyses"][1]["evidence"]["rules"][0]
    assert f"[{rule['interval'][0]:.4g}, {rule['interval'][1]:.4g}]" in gate
    assert 'class="gate-rules"' in gate and 'class="gate-metrics"' in gate
    shadow = page[page.index('<section id="shadow">'):page.index('<section id="canary">')]
    assert "agreement 1 is at least 0.9" in shadow and "51 of 51 mirrored calls compared" in shadow


def test_the_page_without_figures_over_time_still_shows_the_road() -> None:
    page = render_report(ROLLOUT, None)
    assert 'id="chart-traffic"' in page  # the policies alone give the planned share
    assert 'id="chart-errors-none"' in page and 'id="chart-judge-error_rate"' in page


def test_the_terminal_summary() -> None:
    console = Console(record=True, width=160)
    console.print(terminal_summary(ROLLOUT))
    text = console.export_text()
    assert "m rollout 1: v2 against v1 — promoted" in text
    for line in ("compatibility", "offline gate", "step 1 of 2 (20%)", "step 2 of 2 (50%)", "promotion", "watch"):
        assert re.search(rf"{re.escape(line)}\s+│\s+passed", text), line
    assert "accuracy not worse than champion by more than 0.05" in text and "[0, 0]" in text
    assert "last verdict (watch)" in text


def event(kind: str, at: float, step: int | None = None) -> dict[str, Any]:
    evidence: dict[str, Any] = {"rollout": 1, "status": {"step_index": -1 if step is None else step}}
    return {"id": int(at * 10), "at": at, "kind": kind, "message": kind, "actor": "controller", "evidence": evidence}


@pytest.mark.parametrize(("events", "active", "expected"), [
    ([], True, "ttttttt"),
    ([event("compat.passed", 0), event("gate.started", 1)], True, "prttttt"),
    ([event("compat.passed", 0), event("gate.started", 1), event("gate.failed", 2)], False, "pfttttt"),
    ([event("compat.passed", 0), event("gate.started", 1), event("gate.passed", 2), event("shadow.started", 2),
      event("rollout.aborted", 3)], False, "ppatttt"),
    ([event("compat.passed", 0), event("gate.started", 1), event("gate.passed", 2), event("shadow.started", 2),
      event("shadow.passed", 3), event("step.started", 3, 0), event("step.failed", 4, 0)], False, "pppfttt"),
    ([event("compat.passed", 0), event("gate.started", 1), event("gate.passed", 2), event("shadow.started", 2),
      event("shadow.passed", 3), event("step.started", 3, 0), event("step.passed", 4, 0), event("step.started", 4, 1),
      event("rollout.paused", 5), event("rollout.resumed", 6)], True, "pppprtt"),
    ([event("compat.passed", 0), event("gate.started", 1), event("gate.passed", 2), event("shadow.started", 2),
      event("shadow.passed", 3), event("step.started", 3, 0), event("step.passed", 4, 0), event("step.started", 4, 1),
      event("step.passed", 5, 1), event("promote.started", 5), event("promote.done", 6), event("watch.failed", 7)],
     False, "ppppppf"),
    ([event("compat.passed", 0), event("gate.started", 1), event("gate.passed", 2), event("shadow.started", 2),
      event("shadow.passed", 3), event("step.started", 3, 0), event("rollout.rolled_back", 4)], False, "pppbttt"),
])
def test_the_road_is_read_from_the_events(events: list[dict[str, Any]], active: bool, expected: str) -> None:
    """One letter per stage (compat gate shadow 20% 50% promote watch): p passed, f failed,
    r running, a aborted, b rolled back, t not reached."""
    letters = {"passed": "p", "failed": "f", "running": "r", "aborted": "a", "rolled back": "b", "not reached": "t"}
    stages = road({"spec": SPEC, "events": events, "analyses": [], "active": active, "updated_at": 9.0})
    assert "".join(letters[s.state] for s in stages) == expected
