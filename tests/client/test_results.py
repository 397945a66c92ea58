"""Results in a terminal (repr) and a notebook (_repr_html_), from answers as the server writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from changeover.client import Events, GateResult, InvalidRequestError, Rollout, Status, load_spec
from changeover.client.rollouts import Event

STATUS = {"models": [{"model": "cancer", "versions": 2, "aliases": {"champion": 1, "candidate": 2},
                      "policy": {"model": "cancer", "generation": 7, "champion": 1, "weights": {"2": 25.0},
                                 "shadows": [], "sticky_key": "header:x-user-id"}}],
          "gateway": {"replica": "r1"}, "controller": {"leading": True}}

GATE = {"model": "cancer", "candidate": 2, "against": 1, "verdict": "fail", "task": "classification", "n_rows": 569,
        "metrics": {"accuracy": {"candidate": 0.91, "champion": 0.95, "diff": -0.04, "ci_low": -0.06, "ci_high": -0.02}},
        "rules": [{"metric": "accuracy", "rule": "accuracy not worse than champion (margin 0.01)", "figure": -0.04,
                   "interval": [-0.06, -0.02], "passed": False, "reason": "<b>worse</b> by 0.04 [-0.06, -0.02]"}],
        "notes": ["no latency rule"]}


def test_status_shows_the_traffic_of_each_model() -> None:
    status = Status.from_json(STATUS)
    assert status["cancer"].champion == 1
    assert status["cancer"].policy is not None and status["cancer"].policy.traffic == {1: 75.0, 2: 25.0}
    text = repr(status)
    assert text.splitlines()[0].split() == ["model", "versions", "aliases", "generation", "traffic"]
    assert "candidate=v2, champion=v1" in text and "v1: 75%, v2: 25%" in text
    page = status._repr_html_()
    assert page.startswith("<table>") and "<td style='text-align:left;vertical-align:top'>v1: 75%, v2: 25%</td>" in page


def test_a_gate_shows_metrics_and_rules_and_escapes_what_it_shows() -> None:
    gate = GateResult.from_json(GATE)
    assert not gate.passed and gate.rules[0].interval == (-0.06, -0.02)
    assert repr(gate).splitlines() == [
        "<GateResult cancer v2 against v1: offline gate on 569 rows — fail (0/1 rules passed)>",
        "  ✗ <b>worse</b> by 0.04 [-0.06, -0.02]"]
    page = gate._repr_html_()
    assert "&lt;b&gt;worse&lt;/b&gt;" in page and "<b>worse</b>" not in page
    assert "[-0.06, -0.02]" in page and "note: no latency rule" in page
    with pytest.raises(ValueError, match="report=True"):
        gate.save_report("never.html")


def test_events_are_a_tuple_shown_as_a_table() -> None:
    events = Events(Event.from_json({"id": i, "at": 1.7e9, "actor": "cli", "model": "m", "kind": "push",
                                     "message": f"m v{i} pushed", "evidence": {}}) for i in (1, 2))
    assert [e.id for e in events] == [1, 2] and isinstance(events, tuple)
    assert repr(events).splitlines()[0].split() == ["id", "when", "actor", "model", "kind", "message"]
    assert "m v2 pushed" in repr(events) and "2 events" in events._repr_html_()
    assert repr(Events()) == "(no events)"


def test_a_rollout_shows_phase_step_and_verdicts() -> None:
    rollout = Rollout.from_json({
        "id": 4, "model": "m", "active": True, "spec": {"canary": {"steps": [5, 25, 50]}},
        "status": {"phase": "progressing", "step_index": 1, "weight": 25.0, "message": "baking step 2",
                   "candidate_version": 2, "champion_version": 1},
        "analyses": [{"kind": "step", "outcome": "pass", "version": 2, "at": 1.7e9,
                      "evidence": {"checks": [{"reason": "error rate within 0.002"}]}}], "events": []})
    assert (rollout.step, rollout.ended, rollout.analyses[0].reasons) == ("2/3", False, ["error rate within 0.002"])
    assert repr(rollout).splitlines()[0] == (
        "<Rollout m rollout 4: v2 against v1: progressing, step 2/3, weight 25% — baking step 2>")
    assert "error rate within 0.002" in rollout._repr_html_()


def test_a_spec_file_reads_its_gate_data_beside_it(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("model: m\ncandidate: '2'\ngate: {data: holdout.csv, task: classification}\n")
    assert load_spec(tmp_path / "spec.yaml")["gate"]["data"] == str((tmp_path / "holdout.csv").resolve())
    (tmp_path / "list.yaml").write_text("- model\n")
    with pytest.raises(InvalidRequestError, match="expected a mapping") as caught:
        load_spec(tmp_path / "list.yaml")
    assert caught.value.field == "spec"
