"""Compatibility and the gateway decide what a version accepts with one rule: compat calls a
signature change breaking exactly when the gateway would refuse today's requests."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from changeover.domain.compat import compare_signatures
from changeover.domain.signature import DATATYPES, NUMPY_BY_DATATYPE, Signature, TensorSpec, accepts_datatype
from changeover.errors import InvalidInput
from datatype_pairs import DATATYPE_PAIRS


def one_input(datatype: str, shape: tuple[int, ...] = (-1,)) -> Signature:
    return Signature(inputs=(TensorSpec("x", datatype, shape),), outputs=(TensorSpec("y", "FP64", (-1,)),))


def todays_request(champion: Signature) -> dict[str, tuple[np.ndarray, str]]:
    """What a client of the champion sends: its declared datatypes and shapes."""
    return {name: (array, champion.input(name).datatype)  # type: ignore[union-attr]
            for name, array in champion.sample_inputs(batch=3).items()}


def gateway_accepts(candidate: Signature, request: dict[str, tuple[np.ndarray, str]]) -> bool:
    try:
        candidate.conform_inputs(request)
    except InvalidInput:
        return False
    return True


def breaking(champion: Signature, candidate: Signature) -> bool:
    return any(c.breaking for c in compare_signatures(champion, candidate))


@pytest.mark.parametrize(("sent", "declared", "accepted"), DATATYPE_PAIRS)
def test_the_gateway_takes_the_same_datatype_and_safe_widenings_cast(sent: str, declared: str, accepted: bool) -> None:
    assert accepts_datatype(declared, sent) is accepted
    data = np.array([1, 0, 1]).astype(NUMPY_BY_DATATYPE[sent])
    if sent == "BYTES":
        data = np.array(["a", "b", "c"], dtype=object)
    signature = one_input(declared)
    if accepted:
        inputs = signature.conform_inputs({"x": (data, sent)})
        assert inputs["x"].dtype == np.dtype(NUMPY_BY_DATATYPE[declared])  # what the version declared, cast
        assert inputs["x"].tolist() == data.tolist()  # without loss
    else:
        with pytest.raises(InvalidInput) as info:
            signature.conform_inputs({"x": (data, sent)})
        assert (info.value.field, info.value.expected, info.value.got) == ("x", f"datatype {declared}", f"datatype {sent}")


@pytest.mark.parametrize(("sent", "declared", "accepted"), DATATYPE_PAIRS)
def test_compat_calls_a_datatype_change_breaking_exactly_when_the_gateway_refuses(
        sent: str, declared: str, accepted: bool) -> None:
    changes = compare_signatures(one_input(sent), one_input(declared))
    assert breaking(one_input(sent), one_input(declared)) is not accepted
    if sent == declared:
        assert changes == []
        return
    (change,) = changes
    assert change.tensor == "x" and change.detail.startswith(f"{sent} -> {declared}")
    if accepted:
        assert change.kind == "input_datatype_wider" and "casts" in change.detail
    else:
        assert change.kind in ("input_datatype_narrower", "input_datatype_changed") and "refuses" in change.detail


def test_the_float_widening_from_the_field_report() -> None:
    """FP32 traffic, FP64 candidate: compat says not breaking, and the gateway takes the FP32
    data (cast to FP64) instead of answering 422."""
    assert not breaking(one_input("FP32", (-1, 4)), one_input("FP64", (-1, 4)))
    x = np.array([[0.5, -1.25, 3.0, 0.1]], dtype=np.float32)
    inputs = one_input("FP64", (-1, 4)).conform_inputs({"x": (x, "FP32")})
    assert inputs["x"].dtype == np.float64 and np.array_equal(inputs["x"], x.astype(np.float64))


@pytest.mark.parametrize(("old", "new"), list(itertools.product(sorted(DATATYPES), repeat=2)))
def test_every_datatype_pair_compat_and_gateway_agree(old: str, new: str) -> None:
    champion, candidate = one_input(old, (-1, 2)), one_input(new, (-1, 2))
    assert breaking(champion, candidate) is not gateway_accepts(candidate, todays_request(champion))


@pytest.mark.parametrize(("old", "new"), [
    ((-1, 4), (-1, 4)),
    ((-1, 4), (-1, -1)),  # wider: any width now
    ((-1, -1), (-1, 4)),  # narrower: today's requests of another width are refused
    ((-1, 4), (-1, 5)),
    ((-1, 4), (-1, 4, 1)),
    ((-1,), (-1, 1)),
    ((3, 4), (-1, 4)),
])
def test_every_shape_change_compat_and_gateway_agree(old: tuple[int, ...], new: tuple[int, ...]) -> None:
    champion, candidate = one_input("FP32", old), one_input("FP32", new)
    # today's requests: every concrete shape the champion takes (a -1 as 1, 3 or 7)
    requests = [{"x": (np.zeros(tuple(d if d > 0 else n for d in old), dtype=np.float32), "FP32")} for n in (1, 3, 7)]
    refused_some = not all(gateway_accepts(candidate, r) for r in requests)
    assert breaking(champion, candidate) is refused_some


def test_renamed_added_and_optional_inputs_agree_with_the_gateway() -> None:
    champion = Signature(inputs=(TensorSpec("x", "FP32", (-1, 2)),))
    for candidate, expected in [
        (Signature(inputs=(TensorSpec("z", "FP32", (-1, 2)),)), True),
        (Signature(inputs=(TensorSpec("x", "FP32", (-1, 2)), TensorSpec("w", "FP32", (-1,)))), True),
        (Signature(inputs=(TensorSpec("x", "FP32", (-1, 2)), TensorSpec("w", "FP32", (-1,), optional=True))), False),
    ]:
        assert breaking(champion, candidate) is expected
        assert gateway_accepts(candidate, todays_request(champion)) is not expected
