"""Re-ranking: query expansion (alpha-QE, `--expand N`), diffusion (`--diffuse`) or centring
(`--centre`), the last two below.

Query expansion searches again with the query averaged with its first neighbours.

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


DIFFUSION_SHORTLIST = 200
"""Nearest stored vectors the diffusion re-orders; the rest keep their order after them."""
DIFFUSION_NEIGHBOURS = 10
"""Each shortlisted vector's edges: to its nearest shortlisted vectors, kept when mutual."""
DIFFUSION_ALPHA = 0.9
"""Share of a vector's score passed on to its neighbours at each step (Iscen et al.: 0.99)."""
DIFFUSION_SEEDS = 5
"""The query's nearest vectors that start the diffusion, weighted by similarity^3."""
DIFFUSION_GAMMA = 3.0
"""Similarity exponent of the edges and seeds: weak edges count little."""
DIFFUSION_STEPS = 40
"""Iterations of f <- alpha * S f + y; 0.9^40 < 0.015 of the first step is left unspread."""
DIFFUSED_DISTANCE = (
    "Euclidean distance from the query to the match, as without re-ranking; the order is the "
    "diffusion's, so distances need not increase down the list"
)


@dataclass(frozen=True)
class Diffusion:
    """Diffusion on the k-NN graph of the query's shortlist (Iscen et al., CVPR 2017,
    truncated to the shortlist): a match reached through chains of close photos rises.

    Nothing is stored or precomputed: the graph is made per query from the shortlist's stored
    vectors, so a photo added to the index takes part in the next search. Settings chosen on
    calibration halves of five labelled collections (benchmarks/diffusion.py).
    """

    shortlist: int = DIFFUSION_SHORTLIST
    neighbours: int = DIFFUSION_NEIGHBOURS
    alpha: float = DIFFUSION_ALPHA
    seeds: int = DIFFUSION_SEEDS

    def __post_init__(self) -> None:
        if self.shortlist < 2 or self.neighbours < 1 or self.seeds < 1:
            raise ValueError(
                "diffusion: a shortlist of 2 or more, and 1 or more neighbours and seeds; got "
                f"{self.shortlist}, {self.neighbours}, {self.seeds}."
            )
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"diffusion: alpha must lie in [0, 1), got {self.alpha}.")

    @property
    def is_on(self) -> bool:
        return True

    def first_search_size(self, k: int) -> int:
        """How many neighbours the first search fetches: the shortlist, its copies, and k."""
        return max(k, self.shortlist) + SPARE_NEIGHBOURS

    def describe(self) -> dict[str, Any]:
        return {
            "method": "diffusion",
            "shortlist": self.shortlist,
            "neighbours": self.neighbours,
            "alpha": self.alpha,
            "seeds": self.seeds,
            "distance": DIFFUSED_DISTANCE,
        }


CENTRING_SHORTLIST = 200
"""Nearest stored vectors (by the plain distance) that centring re-scores; with k above it,
the k nearest are re-scored, so every distance shown is a centred one."""
CENTRED_DISTANCE = (
    "Euclidean distance between the query and the match after the square root of each vector, "
    "less the collection's mean of those, made unit length; the matches are the nearest by it "
    "among the 200 nearest by the plain distance"
)


@dataclass(frozen=True)
class Centring:
    """Power normalisation and centring, as a re-ranker of the query's shortlist.

    GeM vectors are not negative and a few dimensions are large in every photo; the square root
    evens their weight, and subtracting the collection's mean of the rooted vectors leaves
    what tells photos apart rather than what all photos share. Only the shortlist is
    re-scored, so the stored vectors (and the duplicate finder's thresholds on them) stay as
    they are; the mean is the index's (`ImageIndex.centring_mean`), kept with it and taken again
    when its photos change. Vectors with negative values (CLIP's) are searched plain.
    """

    shortlist: int = CENTRING_SHORTLIST

    def __post_init__(self) -> None:
        if self.shortlist < 1:
            raise ValueError(f"centring: a shortlist of 1 or more, got {self.shortlist}.")

    @property
    def is_on(self) -> bool:
        return True

    def first_search_size(self, k: int) -> int:
        """How many neighbours the first search fetches: the shortlist, or k if larger."""
        return max(k, self.shortlist)

    def describe(self) -> dict[str, Any]:
        return {"method": "centred", "shortlist": self.shortlist, "distance": CENTRED_DISTANCE}


def rooted(vectors: np.ndarray) -> np.ndarray:
    """The element-wise square root of (not negative) vectors, in float64."""
    return np.sqrt(np.maximum(np.asarray(vectors, np.float64), 0.0))


def centred_vectors(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """(N, D) vectors rooted, less `mean` (the collection's mean of rooted vectors), unit length."""
    centred = rooted(vectors) - np.asarray(mean, np.float64)
    return centred / np.maximum(np.linalg.norm(centred, axis=-1, keepdims=True), 1e-12)


def centred_order(
    query: np.ndarray, distances: np.ndarray, vectors: np.ndarray, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One query's neighbours (`distances` (M,) plain, non-finite where missing; their (M, D)
    vectors) ordered by centred distance: (positions, their centred distances), nearest first."""
    positions = np.flatnonzero(np.isfinite(np.asarray(distances, np.float64)))
    if not len(positions):
        return positions, np.zeros(0)
    query_centred = centred_vectors(query[np.newaxis], mean)[0]
    similarities = centred_vectors(vectors[positions], mean) @ query_centred
    centred_distances = np.sqrt(np.maximum(2.0 - 2.0 * similarities, 0.0))
    order = np.argsort(centred_distances, kind="stable")
    return positions[order], centred_distances[order]


Reranking = QueryExpansion | Diffusion | Centring
"""One re-ranking per search: `--expand N`, `--diffuse` or `--centre`."""


def diffusion_scores(
    similarities: np.ndarray, vectors: np.ndarray, diffusion: Diffusion
) -> np.ndarray:
    """(M,) scores of a query's shortlist: `similarities` (M,) to the query, best first, and
    the shortlisted (M, D) unit vectors. The graph joins each vector to its `neighbours` most
    similar others, mutual edges only, weights similarity^gamma, symmetrically normalised (S);
    the scores solve f = alpha * S f + y, y the `seeds` best similarities^gamma."""
    count = len(similarities)
    vectors = np.asarray(vectors, np.float64)
    gram = vectors @ vectors.T
    np.fill_diagonal(gram, -np.inf)
    neighbours = min(diffusion.neighbours, count - 1)
    weights = np.zeros((count, count))
    if neighbours > 0:
        nearest = np.argpartition(-gram, neighbours - 1, axis=1)[:, :neighbours]
        rows = np.repeat(np.arange(count), neighbours)
        edges = np.clip(gram[rows, nearest.ravel()], 0.0, 1.0) ** DIFFUSION_GAMMA
        weights[rows, nearest.ravel()] = edges
        weights = np.minimum(weights, weights.T)  # mutual neighbours only
    degrees = weights.sum(axis=1)
    scale = 1.0 / np.sqrt(np.where(degrees > 0, degrees, 1.0))
    normalised = weights * scale[:, np.newaxis] * scale[np.newaxis, :]
    seeds = np.zeros(count)
    seeds[: diffusion.seeds] = (
        np.clip(np.asarray(similarities[: diffusion.seeds], np.float64), 0.0, 1.0)
        ** DIFFUSION_GAMMA
    )
    scores = seeds.copy()
    for _ in range(DIFFUSION_STEPS):
        scores = diffusion.alpha * (normalised @ scores) + seeds
    return scores


def diffused_order(distances: np.ndarray, vectors: np.ndarray, diffusion: Diffusion) -> np.ndarray:
    """Positions of one query's neighbours (`distances` (M,) Euclidean, nearest first, non-finite
    where missing; their (M, D) unit vectors) in diffused order. Neighbours at (almost) zero
    distance are the query itself or copies: they stay first and stay out of the graph; the
    next `shortlist` are re-ordered by `diffusion_scores`; the rest keep their order after."""
    distances = np.asarray(distances, np.float64)
    positions = np.flatnonzero(np.isfinite(distances))
    copies = positions[distances[positions] < SAME_VECTOR_DISTANCE]
    others = positions[distances[positions] >= SAME_VECTOR_DISTANCE]
    shortlist, rest = others[: diffusion.shortlist], others[diffusion.shortlist :]
    if len(shortlist) < 2:
        return np.concatenate([copies, shortlist, rest])
    similarities = 1.0 - distances[shortlist] ** 2 / 2.0  # unit vectors
    scores = diffusion_scores(similarities, vectors[shortlist], diffusion)
    ranked = shortlist[np.argsort(-scores, kind="stable")]
    return np.concatenate([copies, ranked, rest])
