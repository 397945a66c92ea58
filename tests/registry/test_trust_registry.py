"""Trust through the registry itself (what the gateway's pool, the evaluation jobs and replay all
load through): the allow-list compares bytes, and a python version recorded untrusted never loads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from changeover.errors import UntrustedArtifact
from changeover.registry.artifacts import ArtifactStore
from changeover.registry.manifest import read_manifest
from changeover.registry.service import Registry
from changeover.store.store import Store
from modelfiles import python_model


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.close()


def test_an_allow_listed_folder_is_trusted_only_with_the_bytes_it_holds(store: Store, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    registry = Registry(store, ArtifactStore(tmp_path / "artifacts"), trusted_folders=[allowed])
    inside = python_model(allowed / "double", "return inputs['x'].sum(axis=1) * 2")
    record, created = registry.push(inside, name="m", origin=inside)
    assert created and record.trusted
    push = [e for e in store.events("m") if e["kind"] == "push"][-1]
    assert push["message"].endswith(f"; trusted: folder allow-listed by CHANGEOVER_TRUSTED_FOLDERS ({allowed.resolve()})")
    assert push["evidence"]["trust"] == "CHANGEOVER_TRUSTED_FOLDERS"

    # an upload that claims to come from the allow-listed folder but holds other code
    other = python_model(tmp_path / "elsewhere" / "double", "return inputs['x'].sum(axis=1) * -1")
    with pytest.raises(UntrustedArtifact, match="python-runtime folder"):
        registry.push(other, name="m", origin=inside)
    with pytest.raises(UntrustedArtifact, match="python-runtime folder"):
        registry.push(other, name="m", origin=other)  # outside every allow-listed folder
    with pytest.raises(UntrustedArtifact, match="python-runtime folder"):
        registry.push(other, name="m")  # no origin: no allow-listing
    link = tmp_path / "link"
    link.symlink_to(allowed)
    assert registry.push(inside, name="m2", origin=link / "double")[0].trusted  # resolved before it is compared
    assert [v.number for v in store.versions("m")] == [1]


def test_a_python_version_recorded_untrusted_never_loads_until_pushed_again_with_trust(
        store: Store, tmp_path: Path) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    registry = Registry(store, artifacts)
    folder = python_model(tmp_path / "legacy", "return inputs['x'].sum(axis=1)")
    marker = tmp_path / "ran"
    source = (folder / "predictor.py").read_text()
    (folder / "predictor.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + source)
    # a version made before trust was asked of python folders: its record says trusted=false
    sha, relative = artifacts.put(folder)
    signature = read_manifest(folder).signature
    assert signature is not None
    legacy, _ = store.add_version(model="m", sha256=sha, runtime="python", artifact=relative, signature=signature,
                                  labels={}, trusted=False, source="old", actor="test")
    with pytest.raises(UntrustedArtifact) as info:
        registry.load(legacy)
    message = str(info.value)
    assert "m v1 is a python-runtime folder that was not pushed with --trust" in message
    assert "Push the folder again with --trust" in message and "CHANGEOVER_TRUSTED_FOLDERS" in message
    assert not marker.exists()

    again, created = registry.push(folder, name="m", trust=True, actor="alice")
    assert (again.number, created, again.trusted) == (1, False, True)
    trust = [e for e in store.events("m") if e["kind"] == "trust"]
    assert [e["message"] for e in trust] == ["m v1: trusted: whole folder (--trust by alice)"]
    assert trust[0]["actor"] == "alice" and trust[0]["evidence"]["reason"] == "--trust"
    model = registry.load(store.version("m", 1))
    assert marker.exists()
    assert model.predict({"x": np.array([[1.0, 2.0]])})["y"].tolist() == [3.0]
    model.close()
    assert len([e for e in store.events("m") if e["kind"] == "trust"]) == 1
    registry.push(folder, name="m", trust=True)  # already trusted: nothing to record
    assert len([e for e in store.events("m") if e["kind"] == "trust"]) == 1
