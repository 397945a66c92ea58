import json
import re
from pathlib import Path

import pytest

from changeover.domain.spec import (
    RolloutSpec,
    SpecError,
    format_duration,
    load_spec_text,
    parse_duration,
    parse_spec,
)

DESIGN = Path("/work/shared/DESIGN.md")

EXAMPLE = """
model: ranker
candidate: "7"              # a version, or an alias
gate:                       # offline: the candidate against the champion, same data
  data: data/holdout.parquet
  task: ranking             # classification | regression | ranking
  require:
    ndcg_at_10: {not_worse_than: champion, margin: 0.005}
    latency_p99_ms: {max: 20}
shadow:
  sample: 1.0
  until: {requests: 5000, or_after: 30m}
  require: {agreement: {min: 0.9}, candidate_error_rate: {max: 0.001}}
canary:
  sticky_key: header:x-user-id
  steps: [1, 5, 25, 50]     # percent of traffic; each step bakes, then is judged
  bake: 10m
  judge:
    error_rate: {max_increase: 0.002}
    latency_p99_ms: {max_ratio: 1.2}
    label_accuracy: {sequential: true, alpha: 0.05}
promote: auto               # or manual
watch: 1h
"""

FULL = {
    "model": "ranker",
    "candidate": 7,
    "champion": "3",
    "gate": {"data": "d.parquet", "task": "ranking", "query_column": "qid", "ks": [3],
             "require": {"ndcg_at_3": {"better_than": "champion", "margin": 0.01}}},
    "shadow": {"sample": 0.25, "until": {"or_after": "1h30m"}, "segment": "Header:X-Region",
               "timeout": "500ms", "require": {"agreement": {"min": 0.5, "max": 1}}},
    "canary": {
        "sticky_key": "input:user_id",
        "steps": [2.5, 10, 100],
        "bake": 90,
        "max_extensions": 0,
        "judge": {"error_rate": None, "latency_p99_ms": {"max_ratio": 1.5},
                  "label_accuracy": {"sequential": False, "alpha": 0.01, "max_decrease": 0.02,
                                     "label_delay": "1d"},
                  "min_requests": 1000},
        "overrides": [{"header": "X-Tester", "value": 1, "version": "candidate"},
                      {"keys": ["alice", 42], "version": "champion"}],
    },
    "promote": "manual",
    "watch": 0,
}


def _problems(data: object) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return caught.value.problems


def test_the_design_example_parses() -> None:
    spec = load_spec_text(EXAMPLE)
    assert (spec.model, spec.candidate, spec.champion) == ("ranker", "7", "champion")
    assert spec.gate is not None and spec.gate.task == "ranking"
    assert spec.gate.ks == [5, 10] and spec.gate.target == "label"
    assert spec.gate.require["ndcg_at_10"].not_worse_than == "champion"
    assert spec.gate.require["ndcg_at_10"].margin == 0.005
    assert spec.gate.require["latency_p99_ms"].max == 20
    assert spec.shadow is not None and spec.shadow.sample == 1.0
    assert (spec.shadow.until.requests, spec.shadow.until.or_after) == (5000, 1800.0)
    assert spec.shadow.timeout == 1.0
    assert spec.canary is not None and spec.canary.steps == [1, 5, 25, 50]
    assert spec.canary.bake == 600.0 and spec.canary.max_extensions == 3
    assert spec.canary.sticky_key == "header:x-user-id"
    assert spec.canary.judge.label_accuracy is not None
    assert spec.canary.judge.label_accuracy.alpha == 0.05
    assert (spec.promote, spec.watch.duration, spec.watch.holdback) == ("auto", 3600.0, 2.0)


@pytest.mark.skipif(not DESIGN.exists(), reason="shared design not beside the repository")
def test_the_example_in_design_md_itself_parses() -> None:
    text = DESIGN.read_text()
    block = re.search(r"```yaml\n(model: ranker.*?)```", text, re.S)
    assert block is not None
    assert load_spec_text(block.group(1)) == load_spec_text(EXAMPLE)


def test_defaults_of_a_minimal_spec() -> None:
    spec = parse_spec({"model": "m", "candidate": 12})
    assert spec.candidate == "12" and spec.champion == "champion"
    assert spec.gate is None and spec.shadow is None and spec.canary is None
    assert (spec.promote, spec.watch.duration, spec.watch.holdback) == ("auto", 3600.0, 2.0)
    canary = parse_spec({"model": "m", "candidate": "c", "canary": {}}).canary
    assert canary is not None
    assert canary.steps == [1, 5, 25, 50] and canary.bake == 600.0
    assert canary.sticky_key == "header:x-changeover-key" and canary.overrides == []
    assert canary.judge.error_rate is not None and canary.judge.error_rate.max_increase == 0.002
    assert canary.judge.latency_p99_ms is not None
    assert canary.judge.latency_p99_ms.max_ratio == 1.2
    assert canary.judge.label_accuracy is None and canary.judge.min_requests == 100


def test_a_full_spec_is_normalised() -> None:
    spec = parse_spec(FULL)
    assert spec.shadow is not None and spec.canary is not None
    assert spec.shadow.segment == "header:x-region"
    assert spec.shadow.timeout == 0.5 and spec.shadow.until.or_after == 5400.0
    assert spec.canary.overrides[0].header == "x-tester"
    assert spec.canary.overrides[0].value == "1"
    assert spec.canary.overrides[1].keys == ["alice", "42"]
    assert spec.canary.judge.error_rate is None
    assert spec.canary.judge.label_accuracy is not None
    assert spec.canary.judge.label_accuracy.label_delay == 86400.0


@pytest.mark.parametrize("source", [EXAMPLE, FULL, {"model": "m", "candidate": "c"}])
def test_to_dict_round_trips_through_json(source: object) -> None:
    spec = load_spec_text(source) if isinstance(source, str) else parse_spec(source)
    data = json.loads(json.dumps(spec.to_dict()))
    assert parse_spec(data) == spec
    assert isinstance(parse_spec(data), RolloutSpec)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h", 3600), ("1d", 86400), ("1h30m", 5400), (45, 45),
     (2.5, 2.5), ("90", 90), ("500ms", 0.5), ("1.5h", 5400), ("1d2h3m4s", 93784), (0, 0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(parse_duration(text))) == seconds


@pytest.mark.parametrize(
    "text", ["10x", "", "-5", "h", "1m1h", "1h1h", "1 h", "nan", "inf", True, None, [], "-1m"]
)
def test_bad_durations_name_the_field(text: object) -> None:
    problems = _problems({"model": "m", "candidate": "c", "canary": {"bake": text}})
    assert problems[0][0] == "canary.bake"
    assert "duration" in problems[0][1] or "greater than 0" in problems[0][1]


BASE = {"model": "m", "candidate": "c"}


@pytest.mark.parametrize(
    ("changes", "path", "reason"),
    [
        ({"canary": {"steps": [1, 50, 25]}}, "canary.steps[2]", "steps must increase: 25 after 50"),
        ({"canary": {"steps": [5, 5]}}, "canary.steps[1]", "steps must increase: 5 after 5"),
        ({"canary": {"steps": [1, 150]}}, "canary.steps[1]", "less than or equal to 100"),
        ({"canary": {"steps": [0]}}, "canary.steps[0]", "greater than 0"),
        ({"canary": {"steps": []}}, "canary.steps", "at least 1"),
        ({"canary": {"steps": "1,5"}}, "canary.steps", "must be a list"),
        ({"canry": {}}, "canry", "unknown field (did you mean 'canary'?)"),
        ({"canary": {"stpes": [1]}}, "canary.stpes", "unknown field (did you mean 'steps'?)"),
        ({"canary": {"judge": {"eror_rate": {}}}}, "canary.judge.eror_rate", "'error_rate'"),
        ({"model": None}, "model", "valid string"),
        ({"candidate": ""}, "candidate", "at least 1"),
        ({"candidate": "champion"}, "candidate", "candidate and champion are both"),
        ({"gate": {"data": "d"}}, "gate.task", "required"),
        ({"gate": {"data": "d", "task": "vision"}}, "gate.task", "'classification'"),
        ({"gate": {"data": "d", "task": "ranking", "ks": [10, 0]}}, "gate.ks[1]", "greater"),
        ({"gate": {"data": "d", "task": "ranking", "require": {"ndcg": {"at_least": 1}}}},
         "gate.require.ndcg.at_least", "unknown field"),
        ({"gate": {"data": "d", "task": "ranking", "require": {"ndcg": {"mni": 1}}}},
         "gate.require.ndcg.mni", "unknown field (did you mean 'min'?)"),
        ({"gate": {"data": "d", "task": "ranking", "require": {"ndcg": {}}}},
         "gate.require.ndcg", "needs min, max, not_worse_than or better_than"),
        ({"gate": {"data": "d", "task": "ranking", "require": {"ndcg": {"margin": 0.1}}}},
         "gate.require.ndcg", "margin needs not_worse_than or better_than"),
        ({"gate": {"data": "d", "task": "ranking", "require": {"ndcg": 0.5}}},
         "gate.require.ndcg", "must be a mapping"),
        ({"gate": {"data": "d", "task": "ranking", "require": {"x": {"min": 2, "max": 1}}}},
         "gate.require.x", "min 2 is above max 1"),
        ({"gate": {"data": "d", "task": "ranking",
                   "require": {"x": {"not_worse_than": "champion", "better_than": "champion"}}}},
         "gate.require.x", "not both"),
        ({"gate": {"data": "d", "task": "ranking", "require": {"x": {"margin": -1,
                                                                     "better_than": "c"}}}},
         "gate.require.x.margin", "greater than or equal to 0"),
        ({"shadow": {"until": {"requests": 5}}}, "shadow.sample", "required"),
        ({"shadow": {"sample": 0, "until": {"requests": 5}}}, "shadow.sample", "greater than 0"),
        ({"shadow": {"sample": 1.5, "until": {"requests": 5}}}, "shadow.sample", "less than"),
        ({"shadow": {"sample": 1}}, "shadow.until", "required"),
        ({"shadow": {"sample": 1, "until": {}}}, "shadow.until", "requests, or_after, or both"),
        ({"shadow": {"sample": 1, "until": {"requests": 0}}}, "shadow.until.requests", "greater"),
        ({"shadow": {"sample": 1, "until": {"or_after": "soon"}}}, "shadow.until.or_after",
         "not a duration"),
        ({"shadow": {"sample": 1, "until": {"requests": 1}, "segment": "region"}},
         "shadow.segment", "header:NAME or input:NAME"),
        ({"shadow": {"sample": 1, "until": {"requests": 1}, "timeout": 0}}, "shadow.timeout",
         "greater than 0"),
        ({"canary": {"sticky_key": "cookie:id"}}, "canary.sticky_key", "header:NAME or input:NAME"),
        ({"canary": {"bake": 0}}, "canary.bake", "greater than 0"),
        ({"canary": {"max_extensions": -1}}, "canary.max_extensions", "greater than or equal"),
        ({"canary": {"judge": {"label_accuracy": {"alpha": 1}}}},
         "canary.judge.label_accuracy.alpha", "less than 1"),
        ({"canary": {"judge": {"label_accuracy": {"label_delay": "later"}}}},
         "canary.judge.label_accuracy.label_delay", "not a duration"),
        ({"canary": {"judge": {"error_rate": {"max_increase": -0.1}}}},
         "canary.judge.error_rate.max_increase", "greater than 0"),
        ({"canary": {"judge": {"min_requests": "many"}}}, "canary.judge.min_requests", "integer"),
        ({"canary": {"overrides": [{"header": "x-t", "version": "candidate"}]}},
         "canary.overrides[0]", "needs a value"),
        ({"canary": {"overrides": [{"version": "candidate"}]}},
         "canary.overrides[0]", "either header and value, or keys"),
        ({"canary": {"overrides": [{"keys": ["a"], "header": "x", "value": "1",
                                    "version": "champion"}]}},
         "canary.overrides[0]", "either header and value, or keys"),
        ({"canary": {"overrides": [{"keys": ["a"], "version": "champion"},
                                   {"keys": [], "version": "champion"}]}},
         "canary.overrides[1]", "keys must not be empty"),
        ({"canary": {"overrides": [{"keys": ["a"], "version": "previous"}]}},
         "canary.overrides[0].version", "'candidate' or 'champion'"),
        ({"canary": {"overrides": [{"header": "x t", "value": "1", "version": "champion"}]}},
         "canary.overrides[0].header", "not a header name"),
        ({"canary": 5}, "canary", "must be a mapping, got int 5"),
        ({"promote": "later"}, "promote", "'auto' or 'manual'"),
        ({"watch": "-1h"}, "watch.duration", "not a duration"),
        ({"watch": {"duration": "1h", "holdback": 60}}, "watch.holdback", "less than 50"),
        ({"watch": {"guards": {"error_rate": {"max": 5}}}}, "watch.guards.error_rate",
         "a share below 1"),
        ({"canary": {"judge": {"error_rate": {"max_increase": 0}}}},
         "canary.judge.error_rate.max_increase", "greater than 0"),
        ({"canary": {"judge": {"latency_p99_ms": {"max_ratio": 1.0}}}},
         "canary.judge.latency_p99_ms.max_ratio", "greater than 1"),
        ({"canary": {"judge": {"mae": {"max_increase": 1, "max_ratio": 1.1}}}},
         "canary.judge.mae", "not both"),
        ({"canary": {"judge": {"reward": {"max_relative_decrease": 1.5}}}},
         "canary.judge.reward.max_relative_decrease", "less than 1"),
        ({"canary": {"judge": {"error_rate": {"alpha": 0}}}}, "canary.judge.error_rate.alpha",
         "greater than 0"),
        ({"canary": {"on_inconclusive": "hope"}}, "canary.on_inconclusive", "'rollback' or 'pause'"),
        ({"canary": {"max_bake": "soon"}}, "canary.max_bake", "not a duration"),
        ({"interleave": {"sample": 0.1}}, "interleave.until", "required"),
        ({"interleave": {"until": {}}}, "interleave.until", "requests, or_after, or both"),
        ({"interleave": {"sample": 0, "until": {"requests": 5}}}, "interleave.sample",
         "greater than 0"),
        ({"interleave": {"k": 0, "until": {"requests": 5}}}, "interleave.k", "greater than 0"),
        ({"interleave": {"tolerance": 0.5, "until": {"requests": 5}}}, "interleave.tolerance",
         "less than 0.5"),
        ({"interleave": {"tolerance": -0.1, "until": {"requests": 5}}}, "interleave.tolerance",
         "greater than or equal to 0"),
        ({"interleave": {"alpha": 1, "until": {"requests": 5}}}, "interleave.alpha", "less than 1"),
        ({"interleave": {"smaple": 0.1, "until": {"requests": 5}}}, "interleave.smaple",
         "did you mean 'sample'?"),
    ],
)
def test_each_kind_of_wrong_spec_names_its_field(changes: dict, path: str, reason: str) -> None:
    problems = _problems({**BASE, **changes})
    assert any(p == path and reason in r for p, r in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"candidate": 1, "canary": {"steps": [1, 50, 25], "bake": "10x"}, "x": 1})
    paths = [path for path, _ in caught.value.problems]
    assert sorted(paths) == ["canary.bake", "canary.steps[2]", "model", "x"]
    text = str(caught.value)
    assert text.startswith("invalid rollout spec (4 problems):")
    assert "  canary.steps[2]: steps must increase: 25 after 50" in text.splitlines()
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("- model: m\n", "must be a mapping, got a list"),
        ("", "must be a mapping, got nothing"),
        ("just words", "must be a mapping, got a str"),
        ("model: [m\n", "not valid YAML"),
        ("model: m\n  candidate: c\n bad", "not valid YAML"),
    ],
)
def test_text_that_is_not_a_spec_mapping(text: str, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_text(text)
    ((path, message),) = caught.value.problems
    assert path == "" and reason in message


def test_all_names_exist() -> None:
    from changeover.domain import spec

    assert all(hasattr(spec, name) for name in spec.__all__)


@pytest.mark.parametrize(
    ("override", "ok"),
    [
        ({"route_header": True}, True),
        ({"route_header": True, "header": "x-team", "value": "qa"}, True),
        ({"route_header": True, "version": "candidate"}, False),
        ({"route_header": True, "keys": ["a"]}, False),
        ({"route_header": True, "header": "x-team"}, False),
        ({"header": "x-beta", "value": "1"}, False),  # a pin needs its version
    ],
)
def test_route_header_overrides(override: dict, ok: bool) -> None:
    data = {"model": "m", "candidate": "2", "canary": {"overrides": [override]}}
    if ok:
        assert parse_spec(data).canary.overrides[0].route_header  # type: ignore[union-attr]
    else:
        with pytest.raises(SpecError) as info:
            parse_spec(data)
        assert any(path.startswith("canary.overrides[0]") for path, _ in info.value.problems)


def test_an_interleave_stage_has_sensible_defaults_and_round_trips() -> None:
    spec = parse_spec({**BASE, "interleave": {"until": {"requests": 2000, "or_after": "2h"}}})
    il = spec.interleave
    assert il is not None
    assert (il.sample, il.k, il.tolerance, il.alpha, il.min_decided, il.timeout) == (0.1, 10, 0.05, 0.05, 100, 1.0)
    assert (il.until.requests, il.until.or_after) == (2000, 7200.0)
    assert parse_spec(json.loads(json.dumps(spec.to_dict()))) == spec
    assert parse_spec(BASE).interleave is None
