"""Each runtime for real: skops, onnx (onnxruntime), python folders and trusted pickles.
(The remote runtime is tested against a real server in tests/gateway/test_inference_http.py.)"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from changeover.domain.signature import Signature, TensorSpec
from changeover.errors import ArtifactError, UntrustedArtifact
from changeover.registry.manifest import Manifest, read_manifest
from changeover.runtimes import LoadRequest, get_runtime, infer_runtime
from modelfiles import breast_cancer, python_model, skops_classifiers


def fit_lr(C: float = 1.0) -> Pipeline:
    """A scaled logistic regression: it fits in milliseconds (unscaled, lbfgs needs thousands of steps)."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))


def load(runtime: str, path: Path, *, trusted: bool = False, signature: Signature | None = None):
    return get_runtime(runtime).load(
        LoadRequest(path=path, manifest=read_manifest(path), signature=signature, trusted=trusted)
    )


def make_onnx(path: Path, *, zipmap: bool = False) -> Pipeline:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    x, y = breast_cancer()
    model = fit_lr().fit(x.astype(np.float32), y)
    options = None if zipmap else {LogisticRegression: {"zipmap": False}}
    onx = convert_sklearn(model, initial_types=[("features", FloatTensorType([None, 30]))], options=options,
                          target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return model


@pytest.fixture(scope="module")
def skops_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return skops_classifiers(tmp_path_factory.mktemp("skops"))


# ---- choosing the runtime ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "runtime"),
    [("m.skops", "skops"), ("m.onnx", "onnx"), ("m.pkl", "pickle"), ("m.pickle", "pickle"), ("m.joblib", "pickle")],
)
def test_the_suffix_tells_the_runtime(tmp_path: Path, name: str, runtime: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    assert infer_runtime(path, Manifest()) == runtime


def test_model_yaml_tells_the_runtime_first(tmp_path: Path) -> None:
    folder = python_model(tmp_path / "p", "return inputs['x'].sum(axis=1)")
    assert infer_runtime(folder, read_manifest(folder)) == "python"
    assert infer_runtime(tmp_path / "m.skops", Manifest(runtime="onnx")) == "onnx"
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "model.yaml").write_text("predictor: predictor:Model\ninputs: [{name: x, datatype: FP32}]\n")
    assert infer_runtime(tmp_path / "f", read_manifest(tmp_path / "f")) == "python"
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "model.yaml").write_text("artifact: weights.onnx\n")
    assert infer_runtime(tmp_path / "g", read_manifest(tmp_path / "g")) == "onnx"


def test_an_unknown_runtime_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="--runtime"):
        infer_runtime(path, Manifest())
    with pytest.raises(ArtifactError, match="skops"):
        infer_runtime(path, Manifest(runtime="tensorflow"))
    with pytest.raises(ArtifactError, match="tensorflow"):
        get_runtime("tensorflow")


def test_model_yaml_with_unknown_keys_or_bad_tensors_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.yaml").write_text("runtime: python\npredicter: predictor:Model\n")
    with pytest.raises(ArtifactError, match="predicter"):
        read_manifest(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "model.yaml").write_text("inputs: [{name: x, datatype: FP99}]\n")
    with pytest.raises(ArtifactError, match="FP99"):
        read_manifest(tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "model.yaml").write_text("inputs: [unclosed\n")
    with pytest.raises(ArtifactError, match="YAML"):
        read_manifest(tmp_path / "c")


# ---- skops --------------------------------------------------------------------------------


def test_skops_reads_the_signature_from_the_estimator_and_predicts(skops_files: tuple[Path, Path]) -> None:
    x, y = breast_cancer()
    model = load("skops", skops_files[0])
    assert model.signature.inputs == (TensorSpec("input", "FP64", (-1, 30)),)
    assert model.signature.outputs == (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP64", (-1, 2)))
    out = model.predict({"input": x[:50]})
    reference = sio.load(skops_files[0], trusted=sio.get_untrusted_types(file=skops_files[0]))
    assert out["label"].tolist() == reference.predict(x[:50]).tolist()
    np.testing.assert_allclose(out["probabilities"], reference.predict_proba(x[:50]))
    assert (out["label"] == y[:50]).mean() > 0.9
    model.close()


def test_skops_refuses_an_untrusted_type_and_names_it(skops_files: tuple[Path, Path]) -> None:
    with pytest.raises(UntrustedArtifact, match=r"sklearn\.tree\._tree\.Tree"):
        load("skops", skops_files[1])
    model = load("skops", skops_files[1], trusted=True)
    x, _ = breast_cancer()
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(*breast_cancer())
    assert model.predict({"input": x[:20]})["label"].tolist() == tree.predict(x[:20]).tolist()


def test_skops_feature_names_regressors_and_string_classes(tmp_path: Path) -> None:
    x, y = breast_cancer()
    frame = pd.DataFrame(x[:, :3], columns=["radius", "texture", "perimeter"])
    named = fit_lr().fit(frame, np.where(y == 1, "benign", "malignant"))
    sio.dump(named, tmp_path / "named.skops")
    model = load("skops", tmp_path / "named.skops")
    assert model.signature.features == ("radius", "texture", "perimeter")
    assert model.signature.inputs[0].shape == (-1, 3)
    assert model.signature.outputs[0] == TensorSpec("label", "BYTES", (-1,))
    out = model.predict({"input": x[:5, :3]})  # a plain array: the runtime names the columns
    assert out["label"].tolist() == named.predict(frame.iloc[:5]).tolist()

    sio.dump(LinearRegression().fit(x[:, :2], x[:, 2]), tmp_path / "reg.skops")
    reg = load("skops", tmp_path / "reg.skops")
    assert reg.signature.outputs == (TensorSpec("prediction", "FP64", (-1,)),)
    assert reg.predict({"input": x[:4, :2]})["prediction"].shape == (4,)


def test_a_declared_signature_renames_the_input(skops_files: tuple[Path, Path]) -> None:
    declared = Signature(inputs=(TensorSpec("features", "FP64", (-1, 30)),),
                         outputs=(TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP64", (-1, 2))))
    model = load("skops", skops_files[0], signature=declared)
    x, _ = breast_cancer()
    assert model.predict({"features": x[:3]})["label"].shape == (3,)


# ---- onnx ---------------------------------------------------------------------------------


def test_onnx_reads_the_signature_from_the_graph(tmp_path: Path) -> None:
    reference = make_onnx(tmp_path / "lr.onnx")
    model = load("onnx", tmp_path / "lr.onnx")
    assert model.signature.inputs == (TensorSpec("features", "FP32", (-1, 30)),)
    assert model.signature.outputs == (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 2)))
    x, _ = breast_cancer()
    x32 = x[:40].astype(np.float32)
    out = model.predict({"features": x32})
    assert out["label"].dtype == np.int64 and out["probabilities"].dtype == np.float32
    assert (out["label"] == reference.predict(x32)).mean() >= 0.95
    np.testing.assert_allclose(out["probabilities"], reference.predict_proba(x32), atol=1e-3)
    model.close()


def test_onnx_skips_outputs_that_are_not_tensors(tmp_path: Path) -> None:
    make_onnx(tmp_path / "zip.onnx", zipmap=True)  # skl2onnx's default: probabilities as a ZipMap
    model = load("onnx", tmp_path / "zip.onnx")
    assert [o.name for o in model.signature.outputs] == ["output_label"]
    x, _ = breast_cancer()
    out = model.predict({"features": x[:3].astype(np.float32)})
    assert list(out) == ["output_label"] and out["output_label"].shape == (3,)


# ---- python -------------------------------------------------------------------------------


def test_python_folders_answer_one_array_or_a_mapping(tmp_path: Path) -> None:
    one = load("python", python_model(tmp_path / "one", "return inputs['x'].sum(axis=1)"), trusted=True)
    assert one.signature.inputs == (TensorSpec("x", "FP64", (-1, 2)),)
    out = one.predict({"x": np.array([[1.0, 2.0], [3.0, 4.0]])})
    assert list(out) == ["y"] and out["y"].tolist() == [3.0, 7.0]
    two = load("python", python_model(
        tmp_path / "two", "return {'s': inputs['x'].sum(axis=1), 'n': np.full(len(inputs['x']), 2)}",
        outputs="[{name: s, datatype: FP64, shape: [-1]}, {name: n, datatype: INT64, shape: [-1]}]",
    ), trusted=True)
    out = two.predict({"x": np.ones((3, 2))})
    assert out["s"].tolist() == [2.0, 2.0, 2.0] and out["n"].tolist() == [2, 2, 2]


def test_python_predictor_gets_its_folder_and_versions_do_not_share_module_state(tmp_path: Path) -> None:
    body = "COUNT.append(1)\nreturn np.full(len(inputs['x']), float(len(COUNT)))"
    folder = python_model(tmp_path / "state", body)
    (folder / "predictor.py").write_text((folder / "predictor.py").read_text().replace("import time", "import time\nCOUNT = []"))
    (folder / "weights.txt").write_text("41")
    a, b = load("python", folder, trusted=True), load("python", folder, trusted=True)
    x = np.zeros((1, 2))
    assert a.predict({"x": x})["y"].tolist() == [1.0]
    assert a.predict({"x": x})["y"].tolist() == [2.0]
    assert b.predict({"x": x})["y"].tolist() == [1.0]  # its own module
    assert a.predictor.folder == str(folder)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("yaml_text", "files", "needle"),
    [
        ("runtime: python\ninputs: [{name: x, datatype: FP64}]\n", {}, "predictor"),
        ("runtime: python\npredictor: predictor:Model\n", {"predictor.py": "class Model: pass\n"}, "inputs"),
        ("runtime: python\npredictor: missing:Model\ninputs: [{name: x, datatype: FP64}]\n", {}, "missing"),
        ("runtime: python\npredictor: predictor:Nope\ninputs: [{name: x, datatype: FP64}]\n",
         {"predictor.py": "class Model: pass\n"}, "Nope"),
    ],
)
def test_python_folders_that_cannot_load_say_why(tmp_path: Path, yaml_text: str, files: dict[str, str], needle: str) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "model.yaml").write_text(yaml_text)
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(ArtifactError, match=needle):
        load("python", folder, trusted=True)


# ---- pickle -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_pickles_load_only_when_trusted(tmp_path: Path, suffix: str) -> None:
    x, y = breast_cancer()
    estimator = fit_lr().fit(x[:, :4], y)
    path = tmp_path / f"model{suffix}"
    joblib.dump(estimator, path)
    assert infer_runtime(path, Manifest()) == "pickle"
    with pytest.raises(UntrustedArtifact, match="--trust"):
        load("pickle", path)
    model = load("pickle", path, trusted=True)
    assert model.signature.inputs == (TensorSpec("input", "FP64", (-1, 4)),)
    assert model.predict({"input": x[:10, :4]})["label"].tolist() == estimator.predict(x[:10, :4]).tolist()
