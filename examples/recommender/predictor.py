"""A tiny, deterministic recommender: popularity plus user-item affinity from seeded embeddings.

Everything it knows is derived from ``config.json`` in this folder (no download, no training):
a catalogue of ``items`` item ids starting at ``first_item_id``, a Zipf-like popularity per item,
and ``dim``-dimensional embeddings for items and for users. A user's embedding is drawn from a
generator seeded with the model seed and the user id, so the same user always gets the same list,
in any batch, on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class Recommender:
    def load(self, folder: str) -> None:
        """Called once when changeover loads this version; ``folder`` holds this file and model.yaml."""
        config = json.loads((Path(folder) / "config.json").read_text())
        self.seed = int(config["seed"])
        self.k = int(config["k"])
        self.dim = int(config["dim"])
        n_items = int(config["items"])
        rng = np.random.default_rng(self.seed)
        self.item_ids = np.arange(config["first_item_id"], config["first_item_id"] + n_items, dtype=np.int64)
        self.item_vectors = rng.normal(size=(n_items, self.dim)) / np.sqrt(self.dim)
        popularity = 1.0 / np.arange(1, n_items + 1)  # Zipf: item 0 is the most popular
        self.prior = float(config["popularity_weight"]) * np.log(rng.permutation(popularity) * n_items)

    def user_vectors(self, user_ids: np.ndarray) -> np.ndarray:
        return np.stack([np.random.default_rng([self.seed, int(u) & 0x7FFFFFFF]).normal(size=self.dim)
                         for u in user_ids]) if len(user_ids) else np.zeros((0, self.dim))

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``inputs`` maps input names to arrays (a batch of rows); the answer maps output names to arrays."""
        users = np.asarray(inputs["user_id"]).reshape(-1)
        scores = self.user_vectors(users) @ self.item_vectors.T + self.prior  # (users, items)
        # best first; equal scores by item id, so the order never depends on the platform's sort
        order = np.lexsort((np.broadcast_to(self.item_ids, scores.shape), -scores), axis=1)[:, : self.k]
        top = np.take_along_axis(scores, order, axis=1)
        return {"items": self.item_ids[order], "scores": top.astype(np.float32)}
