"""The home holds recorded inputs, labels and the token: only its owner can read any of it."""

from __future__ import annotations

import stat
from pathlib import Path

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess

Y = "[{name: y, datatype: FP64, shape: [-1]}]"


def test_every_file_in_the_home_is_the_owners_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "old-notes.txt").write_text("left by hand, world-readable")
    (home / "old-notes.txt").chmod(0o644)
    server = ServerProcess(home, env={"CHANGEOVER_RECORD_RATE": "1.0"})
    server.start()
    try:
        folder = python_model(tmp_path / "v1", "return {'y': inputs['x'].sum(axis=1)}", outputs=Y)
        for path in [folder, *folder.rglob("*")]:  # a folder as users have them: readable by all
            path.chmod(0o755 if path.is_dir() else 0o644)
        pusher = Client(url=server.url, token=TOKEN)
        pusher.push(folder, name="m", labels={}, runtime=None, trust=True)
        pusher.close()
    finally:
        server.stop()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    loose = [(str(p.relative_to(home)), oct(stat.S_IMODE(p.stat().st_mode))) for p in home.rglob("*")
             if stat.S_IMODE(p.stat().st_mode) & 0o077 and not p.name.startswith("server-")]
    assert loose == []
    assert stat.S_IMODE((home / "store.db").stat().st_mode) == 0o600


def test_a_generated_token_is_kept_in_its_file_and_never_printed(tmp_path: Path) -> None:
    """The token was printed to stderr when generated: into every log that keeps a server's output."""
    import os

    home = tmp_path / "home"
    server = ServerProcess(home)
    server.env = {k: v for k, v in server.env.items() if k != "CHANGEOVER_TOKEN"}
    server.start()
    try:
        token = (home / "token").read_text().strip()
        assert len(token) >= 32
        assert stat.S_IMODE(os.stat(home / "token").st_mode) == 0o600
        import httpx

        assert httpx.get(f"{server.url}/api/status", headers={"authorization": f"Bearer {token}"}).status_code == 200
    finally:
        server.stop()
    log = server.log.read_text()
    assert "generated a management token" in log and str(home / "token") in log
    assert token not in log
