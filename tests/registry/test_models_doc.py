"""docs/models.md and examples/recommender say what the code does: every model.yaml key and every
role is documented, and the example folder reads as the ranker it claims to be."""

from __future__ import annotations

from pathlib import Path

from changeover.domain.roles import ROLES, TASKS
from changeover.registry.manifest import KNOWN_KEYS, read_manifest

ROOT = Path(__file__).resolve().parents[2]


def test_every_model_yaml_key_role_and_task_is_documented() -> None:
    doc = (ROOT / "docs" / "models.md").read_text()
    for word in sorted(KNOWN_KEYS | set(ROLES) | set(TASKS)):
        assert f"`{word}`" in doc, word


def test_the_example_recommender_declares_a_ranking_with_aligned_scores() -> None:
    manifest = read_manifest(ROOT / "examples" / "recommender")
    assert (manifest.runtime, manifest.predictor, manifest.task) == ("python", "predictor:Recommender", "ranking")
    assert manifest.signature is not None
    assert manifest.signature.output_roles() == {"items": "ranking", "scores": "scores"}
    assert [t.name for t in manifest.signature.inputs] == ["user_id"]
