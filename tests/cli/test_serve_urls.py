"""`changeover serve` says where it listens once it does: API, dashboard, metrics, gRPC when on
(also with --workers), and every URL it prints answers."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from serverproc import TOKEN, ServerProcess


def banner(server: ServerProcess, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # printed once listening; the log may trail the readiness probe
        text = server.log.read_text()
        if "metrics" in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"no URLs in the log:\n{server.log.read_text()}")


@pytest.mark.parametrize("args", [(), ("--workers", "2")], ids=["one process", "workers"])
def test_serve_prints_its_urls_once_listening(tmp_path: Path, args: tuple[str, ...]) -> None:
    server = ServerProcess(tmp_path / "home", grpc_port=0, args=args).start(timeout=90)
    try:
        text = banner(server)
        url = server.url
        assert f"changeover is listening on 127.0.0.1:{server.port}" in text
        if args:
            assert "(2 workers)" in text
        for name, path in (("API", "/api/"), ("dashboard", "/"), ("metrics", "/metrics")):
            assert re.search(rf"^  {name} +{re.escape(url + path)}(\s|$)", text, re.M), (name, text)
        assert re.search(rf"^  gRPC +127\.0\.0\.1:{server.grpc_port}$", text, re.M), text
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {TOKEN}"}) as http:
            assert http.get("/api/models").status_code == 200
            assert http.get("/metrics").status_code == 200
            assert http.get("/").status_code == 200
            assert http.get("/openapi.json").status_code == 200
    finally:
        server.stop()


def test_no_grpc_line_when_grpc_is_off(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home").start(timeout=90)
    try:
        text = banner(server)
        assert "gRPC" not in text and f"dashboard  {server.url}/" in text
    finally:
        server.stop()
