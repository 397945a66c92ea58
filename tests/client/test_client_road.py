"""The Python client against a real `changeover serve`: the whole road (push, alias, gate,
shadow with feedback, apply, commands, status, events, rollback), and each refusal raised as
its error with the server's own message."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from changeover import (
    AuthError,
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RefusedError,
    UnavailableError,
)
from changeover.client import GateResult, Rollout, Version
from modelfiles import breast_cancer, skops_classifiers
from serverproc import TOKEN, ServerProcess, free_port


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("client") / "home").start(timeout=120)  # a busy machine starts slowly
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url, TOKEN, actor="ci:test") as c:
        yield c


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return skops_classifiers(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def pushed(client: Client, artifacts: tuple[Path, Path]) -> tuple[Version, Version]:
    v1, v2 = artifacts
    first = client.push(v1, "cancer", labels={"team": "risk"})
    second = client.push(v2, "cancer", trust=True)  # a tree: skops does not trust its type by default
    client.set_alias("cancer", "champion", 1, reason="first")
    return first, second


def request(rows: int = 1, offset: int = 0) -> dict[str, Any]:
    x, _ = breast_cancer()
    part = x[offset: offset + rows]
    return {"inputs": [{"name": "input", "shape": list(part.shape), "datatype": "FP64", "data": part.ravel().tolist()}]}


def test_push_stores_a_version_once(client: Client, pushed: tuple[Version, Version]) -> None:
    first, second = pushed
    assert (first.model, first.version, first.runtime, first.labels, first.created) == (
        "cancer", 1, "skops", {"team": "risk"}, True)
    assert second.version == 2 and repr(second).startswith("<Version cancer v2 skops sha256 ")
    model = client.model("cancer")
    assert [v.version for v in model.versions] == [1, 2] and model.aliases == {"champion": 1}
    assert client.version("cancer", "champion").version == 1 and "cancer" in client.models()


def test_the_same_bytes_again_are_the_existing_version(client: Client, pushed: tuple[Version, Version],
                                                       artifacts: tuple[Path, Path]) -> None:
    again = client.push(artifacts[0], "cancer")
    assert (again.version, again.created) == (1, False)


def test_the_offline_gate_from_a_dataframe(client: Client, pushed: tuple[Version, Version]) -> None:
    x, y = breast_cancer()
    frame = pd.DataFrame(x[:200], columns=[f"f{i}" for i in range(x.shape[1])]).assign(label=y[:200])
    gate = client.validate("cancer", 2, frame, task="classification",
                           policy={"accuracy": {"not_worse_than": "champion", "margin": 0.2}}, report=True)
    assert isinstance(gate, GateResult)
    assert (gate.model, gate.candidate, gate.against, gate.n_rows, gate.verdict) == ("cancer", 2, 1, 200, "pass")
    assert [r.metric for r in gate.rules] == ["accuracy"] and gate.rules[0].passed
    assert "accuracy" in gate.metrics and gate.metrics["accuracy"]["ci_low"] is not None
    page = gate._repr_html_()
    assert "<table>" in page and "accuracy" in page and "rules" in page
    assert "pass (1/1 rules passed)" in repr(gate)
    assert gate.html and "<html" in gate.html.lower()


def test_a_shadow_with_traffic_and_feedback(client: Client, pushed: tuple[Version, Version]) -> None:
    shadow = client.shadow("cancer", 2, sample=1.0, requests=1000)
    assert (shadow.model, shadow.version, shadow.active, shadow.sample) == ("cancer", 2, True, 1.0)
    answers = [client.infer("cancer", request(offset=i)) for i in range(10)]
    assert {a.version for a in answers} == {1} and all(a.request_id for a in answers)
    assert len(answers[0].output()) == 1
    _, y = breast_cancer()
    first = client.feedback(answers[0].request_id or "", label=int(y[0]))
    assert first.accepted and first.request_id == answers[0].request_id
    again = client.feedback(answers[0].request_id or "", label=int(y[0]))
    assert again.status == "duplicate" and again.kept is not None and again.kept["label"] == int(y[0])
    report = wait_until(lambda: (r := client.shadow_report("cancer")).overall.get("pairs") and r, "shadow pairs")
    assert report.shadow.version == 2 and "<table>" in report._repr_html_()
    assert [s.version for s in client.shadows("cancer")] == [2]
    assert client.stop_shadow("cancer") == [2]
    assert client.stop_shadow("cancer") == []


def test_apply_commands_status_events_and_rollback(client: Client, pushed: tuple[Version, Version]) -> None:
    spec = {"model": "cancer", "candidate": "2", "canary": {"steps": [30, 60], "bake": "10m"}, "watch": "1s"}
    rollout = client.apply(spec)
    assert isinstance(rollout, Rollout)
    assert (rollout.model, rollout.candidate, rollout.champion) == ("cancer", 2, 1)
    assert rollout.compat is not None and rollout.compat.passed and rollout.plan
    wait_until(lambda: client.rollout(rollout.id).phase == "progressing", "the first step")

    with pytest.raises(ConflictError) as conflict:
        client.apply(spec)
    assert conflict.value.status == 409 and conflict.value.conflict
    assert f"already has rollout {rollout.id} (progressing)" in conflict.value.message

    latest = client.rollout_status("cancer")
    assert latest is not None and (latest.id, latest.step, latest.weight) == (rollout.id, "1/2", 30.0)
    assert client.promote("cancer").rollout == rollout.id
    phases: list[str] = []
    done = client.wait(rollout.id, timeout=30, poll=0.2, on_change=lambda r: phases.append(r.phase))
    assert done.ended and done.promoted and phases[-1] == "promoted"
    assert "<table>" in done._repr_html_() and "promoted" in repr(done)

    status = client.status()
    assert status["cancer"].champion == 2 and status["cancer"].policy is not None
    assert status["cancer"].policy.traffic == {2: 100.0}
    assert "cancer" in repr(status) and "v2: 100%" in status._repr_html_()

    events = client.events("cancer")
    kinds = [e.kind for e in events]
    assert "rollout.created" in kinds and "promote.done" in kinds
    assert all(e.model == "cancer" for e in events)
    assert any(e.actor == "ci:test" for e in events)  # who the audit log says acted
    assert "rollout.created" in repr(events) and "<table>" in events._repr_html_()
    assert [e.id for e in client.events("cancer", after=events[-2].id)] == [events[-1].id]

    back = client.rollback("cancer")
    assert (back.champion, back.previous, back.rollout) == (1, 2, None)
    assert repr(back) == "<Rollback cancer: champion v2 → v1>"
    assert client.status()["cancer"].champion == 1


def test_errors_carry_the_servers_message(client: Client, server: ServerProcess, pushed: tuple[Version, Version],
                                          tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.version("no-such", 3)
    assert missing.value.status == 404 and "not found" in missing.value.message

    with pytest.raises(InvalidRequestError) as bad:
        client.set_alias("cancer", "champion", 0)
    assert (bad.value.status, bad.value.field) == (422, "version")

    with pytest.raises(InvalidRequestError) as spec:
        client.apply({"model": "cancer", "candidate": "2", "canary": {"stepz": [1]}})
    assert spec.value.status == 422 and spec.value.field == "canary.stepz"
    assert [p.field for p in spec.value.problems] == ["canary.stepz"]

    with pytest.raises(ConflictError) as moved:
        client.set_alias("cancer", "champion", 2, expect=2)
    assert moved.value.conflict and "not v2 as expected" in moved.value.message

    artifact = tmp_path / "model.pkl"
    artifact.write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(RefusedError) as refused:
        client.push(artifact, "pickled")
    assert refused.value.status == 409 and not refused.value.conflict and "trust" in refused.value.message

    with Client(server.url, "wrong") as stranger, pytest.raises(AuthError, match="wrong token"):
        stranger.status()

    nowhere = f"http://127.0.0.1:{free_port()}"
    with Client(nowhere, TOKEN) as lost:
        with pytest.raises(UnavailableError, match=f"no changeover server at {nowhere}") as unreachable:
            lost.status()
        assert unreachable.value.status == 0
        with pytest.raises(InvalidRequestError, match="is not a model name") as named:
            lost.rollback("a/b")  # refused before any request: not the unreachable server's error
        assert (named.value.status, named.value.field) == (0, "name")
