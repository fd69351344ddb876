"""Query expansion (alpha-QE): search again with the query averaged with its first neighbours.

The expanded query is the query plus its n nearest stored vectors, each weighted by its cosine
similarity to the query raised to the power alpha (negative similarities count zero), scaled
back to unit length. Only the query side changes, so nothing is precomputed per collection: a
photo added to the index is used by the next query as it is, with no other vector touched.

A neighbour at (almost) zero distance is the query itself (a database file searched by its
stored vector) or an exact copy of it: it adds nothing but weight on the query, so it is
skipped and the next neighbour taken instead. The distances a re-ranked search prints are the
Euclidean distances from the expanded query, not from the query (`EXPANDED_DISTANCE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_NEIGHBOURS = 0
"""Off by default: on held-out halves of three labelled collections it raised mAP on each
(+0.01 to +0.03) but P@4 by +0.003 or less on flowers5, not on every seed, and it can lower
P@1 (benchmarks/query_expansion.py; docs/benchmarks.md). N = 2 was chosen there."""
DEFAULT_ALPHA = 3.0
"""Similarity exponent: neighbours much less similar than the query's best count little.
Chosen with N = 2 on calibration halves by P@4 (alpha 1 by mAP)."""
SAME_VECTOR_DISTANCE = 1e-3
"""Neighbours nearer than this (Euclidean, unit vectors) are the query itself or a copy."""
SPARE_NEIGHBOURS = 1
"""Extra neighbours fetched in the first search, to stand in for the query itself."""
EXPANDED_DISTANCE = (
    "Euclidean distance from the expanded query (the query plus its nearest stored vectors "
    "weighted by similarity^alpha, unit length) to the match; not from the query itself"
)


@dataclass(frozen=True)
class QueryExpansion:
    """alpha-QE with `neighbours` stored vectors (0: off)."""

    neighbours: int
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        if self.neighbours < 0:
            raise ValueError(f"--expand: a number of neighbours, 0 or more; got {self.neighbours}.")
        if self.alpha < 0:
            raise ValueError(f"the expansion's alpha must be 0 or more, got {self.alpha}.")

    @property
    def is_on(self) -> bool:
        return self.neighbours > 0

    @property
    def first_search_size(self) -> int:
        """How many neighbours the first search fetches."""
        return self.neighbours + SPARE_NEIGHBOURS

    def describe(self) -> dict[str, Any]:
        """What `--json` says about a re-ranked answer and its distances."""
        return {
            "method": "alpha-QE",
            "neighbours": self.neighbours,
            "alpha": self.alpha,
            "distance": EXPANDED_DISTANCE,
        }


def expand_queries(
    queries: np.ndarray,
    neighbour_vectors: np.ndarray,
    neighbour_distances: np.ndarray,
    expansion: QueryExpansion,
) -> np.ndarray:
    """(Q, D) unit queries expanded with their (Q, M, D) neighbours, nearest first.

    `neighbour_distances` (Q, M) are Euclidean; a missing neighbour has a non-finite distance
    (a store's answer when fewer than M vectors matched). Only the first `expansion.neighbours`
    usable neighbours of each query count.
    """
    queries = np.atleast_2d(queries).astype(np.float32)
    if not expansion.is_on or neighbour_vectors.size == 0:
        return queries
    distances = np.asarray(neighbour_distances, np.float64)
    usable = np.isfinite(distances) & (distances >= SAME_VECTOR_DISTANCE)
    usable &= np.cumsum(usable, axis=1) <= expansion.neighbours
    similarities = 1.0 - np.where(usable, distances, 2.0) ** 2 / 2.0  # unit vectors
    weights = np.where(usable, np.clip(similarities, 0.0, 1.0) ** expansion.alpha, 0.0)
    expanded = queries + np.einsum("qm,qmd->qd", weights, neighbour_vectors.astype(np.float64))
    norms = np.linalg.norm(expanded, axis=1, keepdims=True)
    return (expanded / np.maximum(norms, 1e-12)).astype(np.float32)
