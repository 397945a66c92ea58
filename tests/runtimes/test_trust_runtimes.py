"""The runtimes refuse what their version does not trust: a python folder's code never runs
untrusted, and a skops file loads with exactly the types its version names."""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier

from changeover.errors import UntrustedArtifact
from changeover.registry.manifest import read_manifest
from changeover.runtimes import LoadRequest, get_runtime
from modelfiles import breast_cancer, python_model, skops_classifiers

TREE = "sklearn.tree._tree.Tree"


def load(runtime: str, path: Path, *, trusted: bool = False, trusted_types: tuple[str, ...] = ()):
    return get_runtime(runtime).load(LoadRequest(path=path, manifest=read_manifest(path), signature=None,
                                                 trusted=trusted, trusted_types=trusted_types))


def test_an_untrusted_python_folder_is_refused_before_its_code_runs(tmp_path: Path) -> None:
    folder = python_model(tmp_path / "p", "return inputs['x'].sum(axis=1)")
    marker = tmp_path / "ran"
    source = (folder / "predictor.py").read_text()
    (folder / "predictor.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + source)
    with pytest.raises(UntrustedArtifact, match="python-runtime folder whose version is not trusted.*--trust"):
        load("python", folder)
    assert not marker.exists()  # not even imported
    model = load("python", folder, trusted=True)
    assert marker.exists()
    assert model.predict({"x": np.array([[1.0, 2.0]])})["y"].tolist() == [3.0]
    model.close()


def test_a_tree_loads_with_its_one_type_trusted_by_name(tmp_path: Path) -> None:
    _, tree_file = skops_classifiers(tmp_path)
    with pytest.raises(UntrustedArtifact, match=r"sklearn\.tree\._tree\.Tree.*--trust-type sklearn\.tree\._tree\.Tree"):
        load("skops", tree_file)
    model = load("skops", tree_file, trusted_types=(TREE,))
    x, y = breast_cancer()
    expected = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y).predict(x[:20])
    assert model.predict({"input": x[:20]})["label"].tolist() == expected.tolist()


def test_a_type_the_version_does_not_name_is_refused_even_beside_a_named_one(tmp_path: Path) -> None:
    x, y = breast_cancer()
    mixed = make_pipeline(FunctionTransformer(operator.neg), DecisionTreeClassifier(max_depth=2)).fit(x, y)
    path = tmp_path / "mixed.skops"
    sio.dump(mixed, path)
    with pytest.raises(UntrustedArtifact) as info:
        load("skops", path, trusted_types=(TREE,))
    assert "_operator.neg" in str(info.value) and TREE not in str(info.value).split(";")[0]
    model = load("skops", path, trusted_types=(TREE, "_operator.neg"))
    assert model.predict({"input": x[:5]})["label"].tolist() == mixed.predict(x[:5]).tolist()
