"""CLI tables wrap long evidence instead of cutting it ("max 1.2; Mann-Wh"), and a command whose
output is not a terminal prints progress lines instead of a live view that shows nothing."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from changeover.cli import common, evaluation, rollout

REASONS = [f"check {i}: the {i}th Mann-Whitney-U-test-statistic-of-the-latencies is inconclusive "
           f"over 123 windows; the p99 ratio is at most 1.2" for i in range(6)]


def cells(text: str, column: int) -> str:
    """The text of one column of a rendered table, its wrapped lines joined."""
    parts = []
    for line in text.splitlines():
        fields = line.split("│")
        if len(fields) > column + 1:
            parts.append(fields[column + 1].strip())
    return "".join(parts)


def rollout_row(**status: Any) -> dict[str, Any]:
    return {"id": 7, "model": "m", "spec": {"canary": {"steps": [25, 50]}},
            "status": {"phase": "canary", "step_index": 0, "weight": 25, "message": "baking",
                       "candidate_version": 2, "champion_version": 1} | status,
            "analyses": [{"at": 1.7e9, "kind": "canary", "outcome": "inconclusive",
                          "evidence": {"checks": [{"reason": r} for r in REASONS],
                                       "canary": {"requests": 10}, "baseline": {"requests": 30}}}]}


def test_the_rollout_view_wraps_the_whole_evidence() -> None:
    out = Console(file=io.StringIO(), width=80, force_terminal=False)
    out.print(rollout.view(rollout_row()))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert max(len(line) for line in text.splitlines()) <= 80
    evidence = cells(text.split("verdicts")[1], 3)
    whole = "n=10 vs 30; " + "; ".join(REASONS)
    assert evidence.replace(" ", "") == whole.replace(" ", "")  # every word, none cut or ellipsised
    assert "…" not in text


def test_the_gate_rules_wrap_their_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Console(file=io.StringIO(), width=80, force_terminal=False)
    monkeypatch.setattr(evaluation, "console", out)
    reason = ("the 95% interval of candidate - champion is [-0.01234, 0.0456]; its lower bound is not below -0.03 "
              "in segment x-region=north-east-of-the-river-by-the-old-mill-road.")  # a word longer than the column
    evaluation.print_verdict({"model": "m", "candidate": 2, "against": 1, "n_rows": 100, "verdict": "pass",
                              "metrics": {"accuracy": {"candidate": 0.9, "champion": 0.89, "diff": 0.01,
                                                       "ci_low": -0.01, "ci_high": 0.04}},
                              "rules": [{"metric": "accuracy", "rule": "accuracy not worse than champion by more "
                                         "than 0.03", "figure": 0.01, "interval": [-0.01, 0.04], "passed": True,
                                         "reason": reason}]})
    text = out.file.getvalue()  # type: ignore[attr-defined]
    rules = text.split("verdict:")[0].split("┃ why")[1]
    assert cells(rules, 4).replace(" ", "") == reason.replace(" ", "") and "…" not in text


class FakeClient:
    """The management API's answers for one rollout, one look at a time."""

    def __init__(self, looks: list[dict[str, Any]]) -> None:
        self.looks = looks

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.looks.pop(0) if len(self.looks) > 1 else self.looks[0]


def test_following_a_rollout_off_a_terminal_prints_progress_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    monkeypatch.setattr(rollout, "console", Console(file=stdout, width=100, force_terminal=False))
    monkeypatch.setattr(common, "console", Console(file=stdout, width=100, force_terminal=False))
    monkeypatch.setattr(common, "err", Console(file=stderr, width=100, force_terminal=False))
    monkeypatch.setattr(rollout.time, "sleep", lambda s: None)
    first = rollout_row(phase="gate", step_index=-1, weight=0, message="gating") | {"analyses": []}
    second = rollout_row()
    done = rollout_row(phase="promoted", weight=100, message="v2 is champion") | {"analyses": second["analyses"] * 2}
    r = rollout.follow(FakeClient([first, first, second, done]), 7)  # type: ignore[arg-type]
    assert r["status"]["phase"] == "promoted"
    lines = [line.split("] ", 1)[1] for line in stderr.getvalue().splitlines()]
    assert lines[0] == "m rollout 7: gate, candidate at 0% — gating"  # once, though looked at twice
    assert lines[1] == "m rollout 7: canary, step 1/2, candidate at 25% — baking"
    assert lines[2].startswith("canary verdict: inconclusive — n=10 vs 30; check 0:")
    assert lines[3].startswith("m rollout 7: promoted, step 1/2, candidate at 100%")
    assert len(lines) == 5 and lines[4].startswith("canary verdict")  # the second verdict, once
    assert "m rollout 7: v2 against v1" in stdout.getvalue()  # then the view, once
