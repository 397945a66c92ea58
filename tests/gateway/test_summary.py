"""What the gateway keeps of an answer for the request log (`summarize`): the first row of each
output, a ranking's ids under "ranking" (bounded), and one number for the prediction distribution."""

from __future__ import annotations

import numpy as np
import pytest

from changeover.domain.signature import Signature, TensorSpec
from changeover.gateway.summary import MAX_LOGGED_IDS, summarize

RANKER = Signature(inputs=(TensorSpec("user_id", "INT64", (-1,)),),
                   outputs=(TensorSpec("top", "BYTES", (-1, 3), role="ranking"), TensorSpec("s", "FP32", (-1, 3), role="scores")))


@pytest.mark.parametrize(
    ("outputs", "signature", "row", "number"),
    [
        # a classifier: the existing keys, the positive-class probability
        ({"label": np.array([1, 0]), "probabilities": np.array([[0.2, 0.8], [0.9, 0.1]])}, None,
         {"label": 1, "probabilities": [0.2, 0.8]}, 0.8),
        # a regressor, [-1] or [-1, 1]: one number either way
        ({"prediction": np.array([2.5, 1.0])}, None, {"prediction": 2.5}, 2.5),
        ({"variable": np.array([[2.5], [1.0]], dtype=np.float32)}, None, {"variable": [2.5]}, 2.5),
        # a ranker by declared roles: ids under "ranking", the top item's score as the number
        ({"top": np.array([["b", "a", "c"]], dtype=object), "s": np.array([[0.9, 0.5, 0.1]], dtype=np.float32)},
         RANKER, {"top": ["b", "a", "c"], "s": [pytest.approx(0.9), 0.5, pytest.approx(0.1)], "ranking": ["b", "a", "c"]},
         pytest.approx(0.9)),
        # …by name, without a signature (as the shadow mirror calls it); no scores: no number, not an id
        ({"items": np.array([[30, 10, 20], [1, 2, 3]])}, None, {"items": [30, 10, 20], "ranking": [30, 10, 20]}, None),
    ],
)
def test_an_answer_is_summarised_by_the_roles_of_its_outputs(outputs: dict, signature: Signature | None, row: dict,
                                                             number: float | None) -> None:
    got_row, got_number = summarize(outputs, signature)
    assert got_row == row
    assert got_number == number


def test_a_long_ranking_is_cut_to_the_first_ids() -> None:
    row, _ = summarize({"items": np.arange(1000).reshape(1, -1), "scores": np.linspace(1, 0, 1000).reshape(1, -1)})
    assert row["ranking"] == list(range(MAX_LOGGED_IDS)) == row["items"]
    assert len(row["scores"]) == MAX_LOGGED_IDS
