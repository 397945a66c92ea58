"""A real PostgreSQL server for the test session (a pytest plugin).

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["postgres_fixture"]``.

Fixtures:

``postgres_url`` (session)
    Starts a throw-away PostgreSQL server (``initdb`` + ``pg_ctl`` from the newest
    ``/usr/lib/postgresql/*/bin``) on 127.0.0.1 at a free port, creates the database
    ``changeover_test`` and yields
    ``postgresql+psycopg://postgres@127.0.0.1:PORT/changeover_test``.
    The server is stopped and its directory removed at the end of the session.

``fresh_postgres_url`` (function)
    A new, empty database on that server for one test (dropped afterwards, even if a
    connection is still open), for migration tests and anything else that must start clean.

``postgres_server`` (session)
    The :class:`PostgresServer` itself (port, ``url(dbname)``, ``create_database``...).

Tests that use these fixtures get the ``postgres`` marker, so ``-m "not postgres"`` skips them.

When the binaries are missing the tests are skipped, unless the ``CI`` environment variable is
set: then they fail, since CI must run them (``make system-deps`` installs PostgreSQL).

``CHANGEOVER_TEST_POSTGRES_URL`` (a SQLAlchemy URL of a superuser on a running server) makes the
fixtures use that server instead of starting one.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

TEST_DB = "changeover_test"
SUPERUSER = "postgres"
START_TIMEOUT_S = 60
ENV_URL = "CHANGEOVER_TEST_POSTGRES_URL"
_summary_line = ""  # shown at the end of the run: version, port, start-up times
INSTALL_HINT = "install PostgreSQL: `make system-deps` (or `apt-get install -y postgresql` as root)"

# Settings for a disposable test server: durability is not wanted, speed is.
_SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding initdb and pg_ctl, if any."""
    candidates = []
    for bindir in glob.glob("/usr/lib/postgresql/*/bin"):
        path = Path(bindir)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            major = path.parent.name
            key = tuple(int(p) for p in re.findall(r"\d+", major)) or (0,)
            candidates.append((key, path))
    if not candidates:
        return None
    return max(candidates)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _world_traversable(path: Path) -> bool:
    """Whether every directory down to ``path`` lets other users through (for ``postgres``)."""
    path = path.resolve()
    return all(os.stat(part).st_mode & 0o001 for part in [path, *path.parents])


class PostgresServer:
    """One disposable PostgreSQL server in a temporary directory."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.port = 0
        self.root: Path | None = None
        self.timings: dict[str, float] = {}
        self.version = ""
        self._running = False

    # -- paths -------------------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        assert self.root is not None
        return self.root / "postgres.log"

    # -- process helpers ---------------------------------------------------------------
    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        if self.as_root:
            # PostgreSQL refuses to run as root: run it as the unprivileged postgres user.
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        return cmd

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cmd(tool, *args),
            cwd=self.root,  # the postgres user may not enter the caller's cwd (e.g. /root)
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- lifecycle ---------------------------------------------------------------------
    def _make_root(self) -> Path:
        base = Path(tempfile.gettempdir())
        if self.as_root and not _world_traversable(base):
            base = Path("/tmp")
        root = Path(tempfile.mkdtemp(prefix="changeover-pg-", dir=base))
        if self.as_root:
            shutil.chown(root, user=SUPERUSER, group=None)
        return root

    def start(self) -> None:
        if self.as_root:
            try:
                import pwd

                pwd.getpwnam(SUPERUSER)
            except KeyError as exc:
                raise RuntimeError(
                    f"running as root but there is no '{SUPERUSER}' user to run PostgreSQL; "
                    + INSTALL_HINT
                ) from exc
        self.root = self._make_root()
        atexit.register(self.stop)

        t0 = time.monotonic()
        res = self._run(
            "initdb",
            "-D", str(self.datadir),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        self.timings["initdb"] = time.monotonic() - t0

        last_error = ""
        for _attempt in range(5):  # the free port can be taken between probe and bind: retry
            self.port = _free_port()
            t0 = time.monotonic()
            # pg_ctl hands these to a shell: quote them.
            opts = " ".join(f"-c {k}={shlex.quote(v)}" for k, v in _SERVER_OPTIONS.items())
            opts += f" -p {self.port} -k {shlex.quote(str(self.root))}"
            res = self._run(
                "pg_ctl",
                "-D", str(self.datadir),
                "-l", str(self.logfile),
                "-o", opts,
                "-w", "-t", str(START_TIMEOUT_S),
                "start",
                timeout=START_TIMEOUT_S + 30,
            )  # fmt: skip
            if res.returncode == 0:
                self._running = True
                break
            last_error = f"{res.stdout}\n{res.stderr}\n--- server log ---\n{self._log_tail()}"
            self._pg_ctl_stop("immediate")
        else:
            raise RuntimeError(f"pg_ctl start failed:\n{last_error}")

        self._wait_ready(START_TIMEOUT_S)
        self.timings["start"] = time.monotonic() - t0
        with self.admin() as conn:
            row = conn.execute("show server_version").fetchone()
            self.version = str(row[0]) if row else "?"
        self.create_database(TEST_DB)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=5) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not accept connections within {timeout}s: {exc}\n"
                        f"{self._log_tail()}"
                    ) from exc
                time.sleep(0.1)

    def _pg_ctl_stop(self, mode: str) -> bool:
        if self.root is None or not self.datadir.exists():
            return True
        res = self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "30", "stop")
        return res.returncode == 0

    def pause(self) -> None:
        """Stop the server, keeping its data and port (an outage; `resume` ends it)."""
        if not self._pg_ctl_stop("fast"):
            self._pg_ctl_stop("immediate")

    def resume(self) -> None:
        """Start the paused server again on the same port and data."""
        assert self.root is not None
        opts = " ".join(f"-c {k}={shlex.quote(v)}" for k, v in _SERVER_OPTIONS.items())
        opts += f" -p {self.port} -k {shlex.quote(str(self.root))}"
        res = self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", opts,
                        "-w", "-t", str(START_TIMEOUT_S), "start", timeout=START_TIMEOUT_S + 30)
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n{self._log_tail()}")
        self._wait_ready(START_TIMEOUT_S)

    def stop(self) -> None:
        """Stop the server and remove its directory (idempotent)."""
        if self.root is None:
            return
        if self._running and not self._pg_ctl_stop("fast") and not self._pg_ctl_stop("immediate"):
            self._kill_postmaster()
        self._running = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)

    # -- connections -------------------------------------------------------------------
    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def url(self, dbname: str = TEST_DB) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10)

    def create_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class ExternalPostgres(PostgresServer):
    """A server someone else runs (``CHANGEOVER_TEST_POSTGRES_URL``): never started nor stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(Path("/nonexistent"))
        from sqlalchemy.engine import make_url

        self._url = make_url(url).set(drivername="postgresql+psycopg")
        self.port = self._url.port or 5432

    def dsn(self, dbname: str) -> str:
        u = self._url
        parts = {
            "host": u.host or "127.0.0.1",
            "port": str(self.port),
            "user": u.username or SUPERUSER,
            "password": u.password,
            "dbname": dbname,
        }
        return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v})

    def url(self, dbname: str = TEST_DB) -> str:
        return self._url.set(database=dbname).render_as_string(hide_password=False)

    def start(self) -> None:
        self._wait_ready(10)
        with self.admin() as conn:
            row = conn.execute("show server_version").fetchone()
            self.version = str(row[0]) if row else "?"
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (TEST_DB,)
            ).fetchone()
        if not exists:
            self.create_database(TEST_DB)

    def stop(self) -> None:
        pass


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}; {INSTALL_HINT}", pytrace=False)
    pytest.skip(f"no PostgreSQL server: {reason}; {INSTALL_HINT}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    global _summary_line
    external = os.environ.get(ENV_URL)
    server: PostgresServer
    if external:
        server = ExternalPostgres(external)
    else:
        bindir = find_pg_bin()
        if bindir is None:
            _unavailable("no initdb/pg_ctl under /usr/lib/postgresql/*/bin")
            raise AssertionError("unreachable")
        server = PostgresServer(bindir)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    _summary_line = _describe(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of the session database ``changeover_test`` on a real PostgreSQL."""
    return postgres_server.url(TEST_DB)


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty database for this test only."""
    name = f"changeover_t_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(name)
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


_PG_FIXTURES = {"postgres_server", "postgres_url", "fresh_postgres_url"}


def _describe(server: PostgresServer) -> str:
    if isinstance(server, ExternalPostgres):
        return f"postgres: external server {server.version} at port {server.port}"
    return (
        f"postgres: {server.version} from {server.bindir} at 127.0.0.1:{server.port}; "
        f"initdb {server.timings.get('initdb', 0):.2f}s, start {server.timings.get('start', 0):.2f}s"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: needs a real PostgreSQL server (postgres_fixture)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _PG_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _summary_line:
        terminalreporter.write_line(_summary_line)
