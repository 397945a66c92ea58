"""Signatures: the checks a request goes through, table-driven."""

from __future__ import annotations

import numpy as np
import pytest

from changeover.domain.signature import DATATYPES, NUMPY_BY_DATATYPE, Signature, TensorSpec, datatype_of
from changeover.errors import InvalidInput

SIG = Signature(
    inputs=(
        TensorSpec("features", "FP32", (-1, 4)),
        TensorSpec("country", "BYTES", (-1,)),
        TensorSpec("boost", "FP64", (-1,), optional=True),
    ),
    outputs=(TensorSpec("label", "INT64", (-1,)),),
    features=(),
)


def tensors(**named: tuple[np.ndarray, str]) -> dict[str, tuple[np.ndarray, str]]:
    return dict(named)


def good(batch: int = 3) -> dict[str, tuple[np.ndarray, str]]:
    return {
        "features": (np.zeros((batch, 4), dtype=np.float32), "FP32"),
        "country": (np.array(["fr"] * batch, dtype=object), "BYTES"),
    }


@pytest.mark.parametrize(
    ("spec_shape", "shape", "ok"),
    [
        ((-1, 4), (3, 4), True),
        ((-1, 4), (1, 4), True),
        ((-1, 4), (0, 4), True),
        ((-1, 4), (3, 5), False),
        ((-1, 4), (3,), False),
        ((-1, 4), (3, 4, 1), False),
        ((-1, -1), (7, 9), True),
        ((2, 4), (3, 4), False),
        ((2, 4), (2, 4), True),
        ((-1,), (5,), True),
        ((-1,), (5, 1), False),
        ((), (), True),
    ],
)
def test_shape_matching(spec_shape: tuple[int, ...], shape: tuple[int, ...], ok: bool) -> None:
    assert TensorSpec("x", "FP32", spec_shape).shape_matches(shape) is ok


@pytest.mark.parametrize(
    ("change", "field", "expected", "got"),
    [
        # wrong datatype
        ({"features": (np.zeros((3, 4), dtype=np.float64), "FP64")}, "features", "datatype FP32", "datatype FP64"),
        ({"country": (np.zeros(3, dtype=np.int64), "INT64")}, "country", "datatype BYTES", "datatype INT64"),
        # wrong shape
        ({"features": (np.zeros((3, 5), dtype=np.float32), "FP32")}, "features", "shape [-1, 4]", "shape [3, 5]"),
        ({"features": (np.zeros(4, dtype=np.float32), "FP32")}, "features", "shape [-1, 4]", "shape [4]"),
        ({"country": (np.array([["fr"]] * 3, dtype=object), "BYTES")}, "country", "shape [-1]", "shape [3, 1]"),
        # a name the signature does not know
        ({"featurez": (np.zeros((3, 4), dtype=np.float32), "FP32")}, "featurez", "one of the inputs [features, country, boost]",
         "unknown input 'featurez'"),
    ],
)
def test_a_mismatch_names_the_input_what_was_expected_and_what_came(
    change: dict[str, tuple[np.ndarray, str]], field: str, expected: str, got: str
) -> None:
    request = good() | change
    with pytest.raises(InvalidInput) as info:
        SIG.check_inputs(request)
    err = info.value
    assert (err.field, err.expected, err.got) == (field, expected, got)
    assert repr(field) in str(err) and expected in str(err) and got in str(err)


def test_a_missing_required_input_is_named() -> None:
    request = good()
    del request["country"]
    with pytest.raises(InvalidInput) as info:
        SIG.check_inputs(request)
    assert info.value.field == "country"
    assert "required" in info.value.expected


def test_an_optional_input_may_be_absent_or_present() -> None:
    SIG.check_inputs(good())
    SIG.check_inputs(good() | {"boost": (np.ones(3), "FP64")})


def test_inputs_must_share_the_batch_size() -> None:
    request = good(3) | {"country": (np.array(["fr"] * 2, dtype=object), "BYTES")}
    with pytest.raises(InvalidInput) as info:
        SIG.check_inputs(request)
    assert "batch" in info.value.expected
    assert "[2, 3]" in info.value.got


@pytest.mark.parametrize(
    ("array", "datatype"),
    [
        (np.zeros(2, dtype=np.bool_), "BOOL"),
        (np.zeros(2, dtype=np.uint8), "UINT8"),
        (np.zeros(2, dtype=np.uint16), "UINT16"),
        (np.zeros(2, dtype=np.uint32), "UINT32"),
        (np.zeros(2, dtype=np.uint64), "UINT64"),
        (np.zeros(2, dtype=np.int8), "INT8"),
        (np.zeros(2, dtype=np.int16), "INT16"),
        (np.zeros(2, dtype=np.int32), "INT32"),
        (np.zeros(2, dtype=np.int64), "INT64"),
        (np.zeros(2, dtype=np.float16), "FP16"),
        (np.zeros(2, dtype=np.float32), "FP32"),
        (np.zeros(2, dtype=np.float64), "FP64"),
        (np.array(["a", "b"]), "BYTES"),
        (np.array([b"a", b"b"]), "BYTES"),
        (np.array(["a", 1], dtype=object), "BYTES"),
    ],
)
def test_datatype_of_numpy_arrays(array: np.ndarray, datatype: str) -> None:
    assert datatype_of(array) == datatype


def test_datatype_of_refuses_what_the_protocol_cannot_carry() -> None:
    with pytest.raises(ValueError):
        datatype_of(np.zeros(2, dtype=np.complex128))


def test_unknown_datatypes_are_refused_and_names_are_normalised() -> None:
    with pytest.raises(ValueError, match="FP128"):
        TensorSpec("x", "FP128", (-1,))
    assert TensorSpec.from_dict({"name": "x", "datatype": "fp32"}).datatype == "FP32"
    assert TensorSpec.from_dict({"name": "x", "datatype": "INT64"}).shape == (-1,)
    assert {"FP32", "FP64", "INT32", "INT64", "BOOL", "BYTES"} <= DATATYPES


def test_signatures_round_trip_through_dicts() -> None:
    sig = Signature(
        inputs=(TensorSpec("x", "FP64", (-1, 3)), TensorSpec("w", "FP32", (-1,), optional=True)),
        outputs=(TensorSpec("y", "INT64", (-1,)),),
        features=("a", "b", "c"),
    )
    data = sig.to_dict()
    assert data["inputs"][0] == {"name": "x", "datatype": "FP64", "shape": [-1, 3]}
    assert data["inputs"][1]["optional"] is True
    assert data["features"] == ["a", "b", "c"]
    assert Signature.from_dict(data) == sig
    assert sig.input("w") is not None and sig.input("nope") is None


# a signature stored before tasks and roles existed
OLD = {"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [-1]}],
       "outputs": [{"name": "items", "datatype": "INT64", "shape": [-1, 10]}]}


def test_a_signature_stored_without_task_or_roles_loads_and_stores_unchanged() -> None:
    sig = Signature.from_dict(OLD)
    assert sig.task is None and all(t.role is None for t in sig.outputs)
    assert sig.to_dict() == OLD  # no new keys for an old signature
    assert sig.output_roles() == {"items": "ranking"}  # inferred
    assert sig.inferred_task() == "ranking"


def test_task_and_roles_round_trip_through_dicts() -> None:
    data = {"inputs": OLD["inputs"], "task": "ranking",
            "outputs": [{"name": "top", "datatype": "BYTES", "shape": [-1, 10], "role": "ranking"},
                        {"name": "s", "datatype": "FP32", "shape": [-1, 10], "role": "scores"}]}
    sig = Signature.from_dict(data)
    assert sig.task == "ranking" and [t.role for t in sig.outputs] == ["ranking", "scores"]
    assert sig.to_dict() == data
    assert Signature.from_dict(sig.to_dict()) == sig
    assert sig.output_with_role("scores") == sig.outputs[1] and sig.output_with_role("label") is None


def test_roles_are_read_from_protocol_metadata_parameters() -> None:
    # another server's `GET /v2/models/{m}` (the remote runtime reads it): role and task are parameters there
    meta = {"name": "recs", "inputs": OLD["inputs"], "parameters": {"task": "ranking"},
            "outputs": [{"name": "top", "datatype": "INT64", "shape": [-1, 10], "parameters": {"role": "ranking"}},
                        {"name": "extra", "datatype": "FP32", "shape": [-1], "parameters": {"content_type": "np"}}]}
    sig = Signature.from_dict(meta)
    assert sig.task == "ranking" and [t.role for t in sig.outputs] == ["ranking", None]


@pytest.mark.parametrize("datatype", sorted(NUMPY_BY_DATATYPE))
def test_sample_inputs_fit_the_signature(datatype: str) -> None:
    sig = Signature(inputs=(TensorSpec("x", datatype, (-1, 3, -1)), TensorSpec("opt", "FP32", (-1,), optional=True)))
    sample = sig.sample_inputs(batch=2)
    assert set(sample) == {"x"}  # optional inputs are left out
    assert sample["x"].shape == (2, 3, 1)
    assert datatype_of(sample["x"]) == datatype
    sig.check_inputs({"x": (sample["x"], datatype)})
