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
