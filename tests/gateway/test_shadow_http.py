"""Shadows through the CLI and real HTTP: a copy of live traffic goes to a candidate whose
answers are compared with the champion's and never reach a user."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, running_server

OUTPUTS = "[{name: label, datatype: INT64, shape: [-1]}, {name: probabilities, datatype: FP64, shape: [-1, 2]}]"
ANSWER = "p = np.stack([1.0 - label, label * 1.0], axis=1)\nreturn {'label': label, 'probabilities': p}"
CHAMPION = "label = (inputs['x'][:, 0] > 0).astype(np.int64)\n" + ANSWER
# Bodies run only on rows the tests send (x != 0): the warm-up's zeros pass.
VERSIONS = {
    1: CHAMPION,
    # agrees with the champion, except where x1 > 100 (the rows of region "eu")
    2: "x = inputs['x']\nlabel = ((x[:, 0] > 0) ^ (x[:, 1] > 100)).astype(np.int64)\n" + ANSWER,
    3: "if (inputs['x'] != 0).any():\n    raise ValueError('the shadow has a bug')\n" + CHAMPION,
    4: "if (inputs['x'] != 0).any():\n    time.sleep(5)\n" + CHAMPION,
    5: "if (inputs['x'] != 0).any():\n    n = len(inputs['x'])\n"
       "    return {'label': np.zeros(n, dtype=np.int64), 'probabilities': np.full((n, 2), np.nan)}\n" + CHAMPION,
}
ENV = {"COLUMNS": "200"}


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("shadow")
    with running_server(root / "home", env=ENV) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        for number, body in VERSIONS.items():
            folder = python_model(root / f"v{number}", body, outputs=OUTPUTS)
            assert pusher.push(folder, name="m", labels={}, runtime=None, trust=True)["version"] == number
        pusher.close()
        with srv.client() as api:
            assert api.put("/api/models/m/aliases/champion", json={"version": 1}).status_code == 200
        wait_until(lambda: infer(srv, 1.0, 1.0)[0] == 200, "the champion to serve")
        yield srv


def infer(srv: ServerProcess, x0: float, x1: float, headers: dict[str, str] | None = None) -> tuple[int, str | None, int | None, float]:
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [x0, x1]}]}
    started = time.perf_counter()
    r = httpx.post(f"{srv.url}/v2/models/m/infer", json=body, headers=headers or {}, timeout=30)
    elapsed = time.perf_counter() - started
    label = next((o["data"][0] for o in r.json()["outputs"] if o["name"] == "label"), None) if r.status_code == 200 else None
    return r.status_code, r.headers.get("x-changeover-version"), label, elapsed


def send(srv: ServerProcess, n: int, *, x1: float = 1.0, headers: dict[str, str] | None = None) -> list[tuple]:
    """n requests alternating positive and negative x0; each answer must be the champion's."""
    answers = []
    for i in range(n):
        x0 = 1.0 + i if i % 2 == 0 else -1.0 - i
        status, version, label, elapsed = infer(srv, x0, x1, headers)
        answers.append((status, version, label, int(x0 > 0), elapsed))
    return answers


def assert_users_got_the_champion(answers: list[tuple]) -> None:
    assert [a[0] for a in answers] == [200] * len(answers)
    assert {a[1] for a in answers} == {"1"}
    assert [a[2] for a in answers] == [a[3] for a in answers]


def report(srv: ServerProcess, version: int | None = None) -> dict[str, Any]:
    with srv.client() as api:
        r = api.get("/api/models/m/shadows/report", params={"version": version} if version else {})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_shadow_is_compared_per_segment_and_stopping_it_writes_a_verdict(server: ServerProcess, tmp_path: Path) -> None:
    started = server.cli("shadow", "start", "m@2", "--sample", "1.0", "--segment", "header:x-region")
    assert started.returncode == 0, started.stderr
    assert "shadowing m v2 at sample 1" in started.stdout
    wait_for_shadows(server, [2])

    answers = send(server, 20, x1=1.0, headers={"x-region": "us"})
    answers += send(server, 20, x1=150.0, headers={"x-region": "eu"})  # v2 disagrees on every one of these
    assert_users_got_the_champion(answers)
    wait_until(lambda: report(server, 2)["figures"]["overall"].get("pairs", 0) >= 40, "40 pairs")

    result = server.cli("shadow", "report", "m", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["shadow"]["version"] == 2 and out["shadow"]["active"] is True
    overall, segments = out["figures"]["overall"], out["figures"]["segments"]
    assert overall["pairs"] == 40 and overall["shadow_errors"] == 0
    assert overall["agreement"] == pytest.approx(0.5)
    assert (segments["us"]["pairs"], segments["us"]["agreement"]) == (20, 1.0)
    assert (segments["eu"]["pairs"], segments["eu"]["agreement"]) == (20, 0.0)
    assert out["figures"]["worst_segment"]["segment"] == "eu"

    html = tmp_path / "shadow.html"
    text = server.cli("shadow", "report", "m", "--html", str(html))
    assert text.returncode == 0, text.stderr
    assert "shadow v2" in text.stdout and str(html) in text.stdout
    assert html.read_text().lstrip().lower().startswith("<!doctype html")

    stopped = server.cli("shadow", "stop", "m")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped: v2" in stopped.stdout
    after = report(server, 2)
    assert after["shadow"]["active"] is False
    assert after["verdict"]["verdict"] == "pass" and after["verdict"]["pairs"] == 40
    with server.client() as api:
        events = api.get("/api/events", params={"model": "m", "limit": 200}).json()
    assert any(e["kind"] == "shadow_stop" and (e["evidence"]["verdict"] or {}).get("verdict") == "pass"
               for e in events)
    wait_for_shadows(server, [])


def server_policy(srv: ServerProcess) -> dict[str, Any]:
    with srv.client() as api:
        return api.get("/api/models/m").json()["policy"] or {"shadows": []}


def wait_for_shadows(srv: ServerProcess, versions: list[int]) -> None:
    """Until the policy names these shadows and the gateway serves on that generation."""
    def adopted() -> bool:
        with srv.client() as api:
            status = api.get("/api/status").json()
        policy = next(m["policy"] for m in status["models"] if m["model"] == "m")
        return ([s["version"] for s in policy["shadows"]] == versions
                and status["gateway"]["generations"].get("m") == policy["generation"])
    wait_until(adopted, f"the gateway to mirror to {versions}")


def test_a_shadow_with_a_request_limit_stops_itself_with_a_verdict(server: ServerProcess) -> None:
    started = server.cli("shadow", "start", "m@2", "--requests", "10")
    assert started.returncode == 0, started.stderr
    wait_for_shadows(server, [2])
    assert_users_got_the_champion(send(server, 16))
    done = wait_until(lambda: not (r := report(server, 2))["shadow"]["active"] and r, "the shadow to stop itself")
    assert done["shadow"]["stop_reason"] == "limit reached"
    assert done["verdict"]["verdict"] == "pass" and done["verdict"]["pairs"] >= 10
    wait_for_shadows(server, [])


@pytest.mark.parametrize(("version", "kind"), [(3, "error"), (5, "invalid"), (4, "timeout")],
                         ids=["raises", "nan", "hangs"])
def test_a_broken_shadow_changes_nothing_for_users(server: ServerProcess, version: int, kind: str) -> None:
    with server.client() as api:
        r = api.post("/api/models/m/shadows", json={"version": str(version), "sample": 1.0, "timeout_s": 0.2})
        assert r.status_code == 201, r.text
    wait_for_shadows(server, [version])

    answers = send(server, 30)
    assert_users_got_the_champion(answers)
    # a user never waits for the shadow (the hanging one sleeps 5 s per call)
    assert max(a[4] for a in answers) < 2.5, sorted(a[4] for a in answers)[-3:]

    # the pairs reach the store from the writer in batches: wait for all of them, not the first
    figures = wait_until(lambda: (f := report(server, version)["figures"]["overall"]).get("shadow_errors")
                         and (kind == "timeout" or f.get("pairs") == 30) and f,
                         f"the shadow's {kind}s in its report")
    assert figures["errors_by_kind"] == {kind: figures["shadow_errors"]}
    assert figures["shadow_errors"] == figures["pairs"] and figures["candidate_error_rate"] == 1.0
    if kind == "timeout":
        assert figures["timeouts"] == figures["pairs"]
    else:
        assert figures["pairs"] == 30  # every request was mirrored, and every mirror went wrong
    with server.client() as api:
        assert api.delete("/api/models/m/shadows", params={"version": str(version)}).json()["stopped"] == [version]
    wait_for_shadows(server, [])


# last: it stops the module's server and starts another on the same home
def test_a_shadow_survives_a_restart(server: ServerProcess) -> None:
    started = server.cli("shadow", "start", "m@2", "--sample", "1.0")
    assert started.returncode == 0, started.stderr
    wait_for_shadows(server, [2])
    server.stop()

    with running_server(server.home, env=ENV) as again:
        assert [s["version"] for s in server_policy(again)["shadows"]] == [2]
        before = report(again, 2)
        assert before["shadow"]["active"] is True
        paired = before["figures"]["overall"].get("pairs", 0)
        wait_for_shadows(again, [2])
        assert_users_got_the_champion(send(again, 10))
        wait_until(lambda: report(again, 2)["figures"]["overall"].get("pairs", 0) >= paired + 10,
                   "pairs mirrored by the new process")
