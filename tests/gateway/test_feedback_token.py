"""`CHANGEOVER_FEEDBACK_TOKEN`: only the services that know the truth can label requests;
inference stays open."""

from __future__ import annotations

from pathlib import Path

import httpx

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess

Y = "[{name: y, datatype: FP64, shape: [-1]}]"
BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}


def test_feedback_needs_its_own_token_when_one_is_set(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home", env={"CHANGEOVER_FEEDBACK_TOKEN": "fb-secret-0123456789"})
    server.start()
    try:
        pusher = Client(url=server.url, token=TOKEN)
        pusher.push(python_model(tmp_path / "v1", "return {'y': inputs['x'].sum(axis=1)}", outputs=Y), name="m",
                    labels={}, runtime=None, trust=True)
        pusher.close()
        with server.client() as api:
            api.put("/api/models/m/aliases/champion", json={"version": 1}).raise_for_status()
        served = None
        for _ in range(100):
            r = httpx.post(f"{server.url}/v2/models/m/infer", json=BODY, timeout=10)  # inference: no token
            if r.status_code == 200:
                served = r.headers["x-request-id"]
                break
        assert served is not None
        label = {"request_id": served, "label": 3.0}
        assert httpx.post(f"{server.url}/v1/feedback", json=label, timeout=10).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert httpx.post(f"{server.url}/v1/feedback", json=label, headers=wrong, timeout=10).status_code == 403
        right = {"authorization": "Bearer fb-secret-0123456789"}
        got = httpx.post(f"{server.url}/v1/feedback", json=label, headers=right, timeout=10)
        assert got.status_code == 201, got.text
        again = httpx.post(f"{server.url}/v1/feedback", json=label, headers={"authorization": f"Bearer {TOKEN}"},
                           timeout=10)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"  # the management token too
        assert "fb-secret" not in server.log.read_text()  # never logged
    finally:
        server.stop()
