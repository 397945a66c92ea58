"""What a push sends (through httpx's MockTransport, the client's one seam): trust, skops types
to trust only when given, a folder as a .tar.gz with the path it came from."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx

from changeover.client import Client

ANSWER = {"model": "m", "version": 1, "runtime": "skops", "sha256": "ab" * 32, "labels": {}, "signature": {},
          "trusted": False, "created": True}


def pushing(tmp_path: Path) -> tuple[Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=ANSWER)

    return Client("http://changeover.test", "t0ken", transport=httpx.MockTransport(handler)), seen


def test_a_file_with_trust_types_given_and_not(tmp_path: Path) -> None:
    client, seen = pushing(tmp_path)
    artifact = tmp_path / "model.skops"
    artifact.write_bytes(b"zip bytes")
    assert client.push(artifact, "m", labels={"team": "risk"}).created
    client.push(artifact, "m", trust_types=["sklearn.tree._tree.Tree", "numpy.dtype"])
    first, second = (r.url.params for r in seen)
    assert (first["filename"], first["trust"], first.get_list("label")) == ("model.skops", "false", ["team=risk"])
    assert "trust_type" not in first and "folder" not in first and "origin" not in first
    assert second.get_list("trust_type") == ["sklearn.tree._tree.Tree", "numpy.dtype"]
    assert seen[0].content == b"zip bytes" and seen[0].url.path == "/api/models/m/versions"
    assert seen[0].headers["authorization"] == "Bearer t0ken" and seen[0].headers["x-changeover-actor"] == "python"


def test_a_folder_travels_as_a_tar_gz_with_its_origin(tmp_path: Path) -> None:
    client, seen = pushing(tmp_path)
    folder = tmp_path / "ranker"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "model.yaml").write_text("runtime: python\n")
    (folder / "__pycache__" / "x.pyc").write_bytes(b"")
    client.push(folder, "m", trust=True)
    params = seen[0].url.params
    assert (params["folder"], params["trust"], params["filename"]) == ("true", "true", "ranker.tar.gz")
    assert params["origin"] == str(folder.resolve())
    with tarfile.open(fileobj=io.BytesIO(seen[0].content), mode="r:gz") as archive:
        assert archive.getnames() == ["model.yaml"]
