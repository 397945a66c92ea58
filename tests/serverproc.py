"""Real server processes and real model files for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def retry_loading(send: Callable[[], httpx.Response], timeout: float = 30.0) -> httpx.Response:
    """Send until the answer is not "loading, retry shortly" (a 503 with Retry-After, as a pinned
    version not yet loaded on the gateway answers), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        response = send()
        if response.status_code != 503 or "retry shortly" not in response.text or time.monotonic() > deadline:
            return response
        time.sleep(min(float(response.headers.get("retry-after", "1")), 0.2))


class ServerProcess:
    def __init__(self, home: Path, *, store: str | None = None, env: dict[str, str] | None = None,
                 port: int | None = None, grpc_port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.grpc_port = grpc_port  # also serve gRPC there (``serve --grpc-port``); 0: a free port
        if grpc_port == 0:
            self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.args = args  # more `serve` options, e.g. ("--workers", "2")
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CHANGEOVER_HOME": str(self.home),
            "CHANGEOVER_TOKEN": TOKEN,
            "CHANGEOVER_URL": self.url,
            "CHANGEOVER_WINDOW_SECONDS": "0.5",
            "CHANGEOVER_CONTROLLER_TICK_S": "0.2",
            "CHANGEOVER_POLICY_POLL_S": "0.5",
            **(env or {}),
        }
        if store:
            self.env["CHANGEOVER_STORE"] = store
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.home / f"server-{self.port}.log"

    def start(self, timeout: float = 90.0) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 - the server process owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "changeover.cli.main", "serve", "--port", str(self.port),
             *(["--grpc-port", str(self.grpc_port)] if self.grpc_port is not None else []), *self.args],
            env=self.env, stdout=out, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become ready:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "changeover.cli.main", *args], env=self.env,
                                capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"changeover {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result


@contextmanager
def running_server(home: Path, **kwargs: object) -> Iterator[ServerProcess]:
    server = ServerProcess(home, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
