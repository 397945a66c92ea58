"""The remote runtime against a tiny real HTTP backend (tests/fakebackend.py): its timeout
from the labels, retries only of connections never made, the errors that say what failed, and
its circuit breaker telling when it opens and closes."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from changeover.domain.signature import Signature
from changeover.errors import ArtifactError, BackendFailed, BackendUnavailable
from changeover.registry.manifest import Manifest
from changeover.runtimes.remote import RemoteModel, RemoteRuntime, remote_config
from fakebackend import FakeBackend

SIGNATURE = Signature.from_dict({"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 2]}],
                                 "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}]})
X = np.array([[1.0, 2.0], [3.0, 4.0]])


def remote(url: str, tmp_path: Path, **labels: str) -> RemoteModel:
    from changeover.runtimes.base import LoadRequest

    model = RemoteRuntime().load(LoadRequest(path=tmp_path, manifest=Manifest(extra={"url": url, "remote_model": "m"}),
                                             signature=SIGNATURE, trusted=False, labels=labels))
    assert isinstance(model, RemoteModel)
    return model


def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on (closed again at once)
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_labels_set_the_timeout_pool_and_breaker_and_bad_ones_are_refused(tmp_path: Path) -> None:
    config = remote_config({"timeout_s": "2", "max_connections": "3", "breaker_failures": "4",
                            "breaker_cooldown_s": "0.5", "retries": "0"})
    assert (config.timeout_s, config.max_connections, config.retries) == (2.0, 3, 0)
    assert (config.breaker.failures, config.breaker.cooldown_s) == (4, 0.5)
    assert remote_config({}).timeout_s == 5.0
    for bad in ({"timeout_s": "soon"}, {"timeout_s": "0"}, {"max_connections": "1.5"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            remote_config(bad)
    with pytest.raises(ArtifactError, match="timeout_s"):
        remote("http://127.0.0.1:1", tmp_path, timeout_s="-1")


def test_it_answers_and_a_timed_out_infer_is_a_503_never_retried(tmp_path: Path) -> None:
    with FakeBackend(hang_max_s=5) as backend:
        model = remote(backend.url, tmp_path, timeout_s="0.3")
        try:
            assert model.predict({"x": X})["y"].tolist() == [3.0, 7.0]
            backend.mode = "hang"
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match=r"no answer within 0.3s") as caught:
                model.predict({"x": X})
            assert time.monotonic() - started < 2.0
            assert caught.value.retry_after_s >= 1 and caught.value.url == backend.url
            assert backend.requests == 2  # the timed-out one was sent once
        finally:
            model.close()


def test_a_backend_error_is_a_502_naming_the_backend(tmp_path: Path) -> None:
    with FakeBackend() as backend:
        backend.mode = "fail"
        model = remote(backend.url, tmp_path)
        try:
            with pytest.raises(BackendFailed, match="answered 500") as caught:
                model.predict({"x": X})
            assert backend.url in str(caught.value)
        finally:
            model.close()


def test_a_connection_never_made_is_retried_then_a_502() -> None:
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    model = RemoteModel("http://backend", "m", SIGNATURE, httpx.MockTransport(refuse),
                        remote_config({"retries": "2"}))
    with pytest.raises(BackendFailed, match="ConnectError"):
        model.predict({"x": X})
    assert len(attempts) == 3  # the first try and two retries


def test_the_breaker_opens_fails_fast_and_closes_after_a_good_probe(tmp_path: Path) -> None:
    told: list[tuple[str, dict[str, Any]]] = []
    with FakeBackend() as backend:
        model = remote(backend.url, tmp_path, breaker_failures="3", breaker_cooldown_s="0.5", retries="0")
        model.on_breaker = lambda state, info: told.append((state, info))
        try:
            backend.mode = "fail"
            for _ in range(3):
                with pytest.raises(BackendFailed):
                    model.predict({"x": X})
            assert [s for s, _ in told] == ["open"]
            assert told[0][1]["url"] == backend.url and told[0][1]["failures"] == 3
            assert "answered 500" in told[0][1]["cause"]
            sent = backend.requests
            with pytest.raises(BackendUnavailable, match="circuit breaker open") as caught:
                model.predict({"x": X})
            assert caught.value.retry_after_s == 1
            assert backend.requests == sent  # failed fast: not sent
            backend.mode = "ok"
            time.sleep(0.6)
            assert model.predict({"x": X})["y"].tolist() == [3.0, 7.0]  # the probe
            assert [s for s, _ in told] == ["open", "closed"]
        finally:
            model.close()


def test_a_dead_backend_opens_the_breaker(tmp_path: Path) -> None:
    told: list[str] = []
    model = remote(dead_url(), tmp_path, breaker_failures="2", retries="1")
    model.on_breaker = lambda state, info: told.append(state)
    try:
        for _ in range(2):
            with pytest.raises(BackendFailed, match="ConnectError"):
                model.predict({"x": X})
        with pytest.raises(BackendUnavailable):
            model.predict({"x": X})
        assert told == ["open"]
    finally:
        model.close()
