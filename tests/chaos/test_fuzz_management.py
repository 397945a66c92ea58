"""Bad input, as an attacker or a careless operator sends it: schemathesis generates requests
(valid and invalid) from the server's own /openapi.json for every management operation and
every inference one, against a real `changeover serve` with real models. No answer is a 5xx
(but the declared ones: a model's own failure, "loading, retry shortly"), and every refusal
is a 4xx whose body names the cause."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from chaoslib import LONG, push_folder, record, scale
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfiles import python_model
from serverproc import TOKEN, ServerProcess

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402

MODELS = ["r", "boom"]  # "boom" fails (a declared 500 with an error_id) on negative inputs
TOTAL = scale(160, 1500)  # cases asked for in all (operations with few distinct inputs give fewer: ~1,150 run)
SECONDS = scale(45, 900)  # and at most this long
Y = "[{name: y, datatype: FP64, shape: [-1]}]"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("fuzz-management")
    srv = ServerProcess(root / "home", env={"CHANGEOVER_MAX_BODY_BYTES": str(64 * 1024)}).start(timeout=120)
    try:
        with srv.client() as api:
            for model, body in (("r", "return {'y': inputs['x'].sum(axis=1) * N}"),
                                ("boom", "if (inputs['x'] < 0).any():\n    raise ValueError('negative input')\n"
                                         "return {'y': inputs['x'].sum(axis=1) * N}")):
                for number in (1, 2):
                    folder = python_model(root / f"{model}{number}", body.replace("N", str(number)), outputs=Y)
                    assert push_folder(api, model, folder).status_code == 201
                api.put(f"/api/models/{model}/aliases/champion", json={"version": 1}).raise_for_status()
        yield srv
    finally:
        srv.stop()


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(path, method.upper()) for path, ops in spec["paths"].items() for method in ops
            if method in ("get", "post", "put", "delete", "patch")]


def strategy(operation: Any, path: str) -> st.SearchStrategy[Any]:
    """Cases of both generation modes, with the path's model (and version) sometimes a real
    one, so the bodies reach the decoding, the store and the models, not only the 404."""
    options = []
    real: dict[str, str] = {}
    for name in ("name", "model"):
        if "{" + name + "}" in path:
            real[name] = "r"
    for name in ("ref", "version"):
        if "{" + name + "}" in path:
            real[name] = "2"
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        options.append(operation.as_strategy(generation_mode=mode))
        if real:
            options.append(operation.as_strategy(generation_mode=mode, path_parameters=real))
    return st.one_of(options)


def names_its_cause(response: httpx.Response) -> bool:
    """A refusal says why: an ``error`` message (``problems``/``field`` where it is one), or the
    framework's list of fields with what is wrong with each."""
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    if isinstance(body.get("error"), str) and body["error"].strip():
        return True
    detail = body.get("detail")
    return isinstance(detail, list) and bool(detail) and all("loc" in d and "msg" in d for d in detail)


def declared_failure(case: Any, response: httpx.Response) -> bool:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    answer = answer if isinstance(answer, dict) else {}
    params = case.path_parameters or {}
    if response.status_code == 500 and params.get("model") == "boom" and "error_id" in answer:
        return True  # the model's own failure, with its error id
    if response.status_code == 503 and "retry-after" in {k.lower() for k in response.headers}:
        return True  # loading, retry shortly
    return response.status_code == 503 and answer.get("ready") is False  # readiness: "not ready"


def fuzz(operation: Any, path: str, method: str, server: ServerProcess, budget: int, deadline: float,
         statuses: Counter[int], bad: list[str]) -> int:
    seen = 0

    @settings(max_examples=budget, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy(operation, path))
    def run(case: Any) -> None:
        nonlocal seen
        if time.monotonic() > deadline:
            return
        seen += 1
        response = case.call(base_url=server.url, headers=AUTH, timeout=60)
        statuses[response.status_code] += 1
        where = f"{method} {case.formatted_path} {response.status_code}: {response.text[:300]}\n" \
                f"  query={case.query!r:.300} body={case.body!r:.300}"
        if response.status_code >= 500 and not declared_failure(case, response):
            bad.append(where)
        elif 400 <= response.status_code < 500 and not names_its_cause(response):
            bad.append("a refusal that does not say why: " + where)

    run()
    return seen


@pytest.mark.timeout(SECONDS + 300)
def test_fuzzing_management_and_inference_finds_no_server_error(server: ServerProcess) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    ops = operations(spec)
    management = [op for op in ops if op[0].startswith("/api/")]
    assert len(management) >= 20, management
    statuses: Counter[int] = Counter()
    bad: list[str] = []
    per_op = max(3, TOTAL // len(ops))
    started = time.monotonic()
    deadline = started + SECONDS
    tried = {op: fuzz(schema[op[0]][op[1]], op[0], op[1], server, per_op, deadline, statuses, bad) for op in ops}
    total = sum(tried.values())
    seen_management = sum(n for op, n in tried.items() if op in management)
    print(f"{total} cases ({seen_management} management) in {time.monotonic() - started:.0f}s: {dict(statuses)}")
    record("schemathesis: management + inference cases", total, total - len(bad),
           f"{len(ops)} operations, statuses {dict(sorted(statuses.items()))}")
    assert not bad, f"{len(bad)} of {total}:\n" + "\n".join(bad[:12])
    assert total >= (1000 if LONG else 50), (total, tried)  # short: bounded in time on a loaded machine
    assert any(400 <= s < 500 for s in statuses) and 200 in statuses, statuses
    # and still serving afterwards
    answer = httpx.post(f"{server.url}/v2/models/r/infer", timeout=10, json={"inputs": [
        {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]})
    assert answer.status_code == 200, answer.text
