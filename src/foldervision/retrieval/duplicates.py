"""Near-duplicate images: pairs closer than a threshold, grouped with union-find.

Every indexed vector asks the store for its nearest neighbours (the store's own index, so the
search scales like `search` does, never an all-pairs loop); a query whose neighbours are all
under the threshold asks again for twice as many, so a large group is found whole. Pairs
under the threshold are joined with union-find, so a chain of edits of one photo (resized,
then cropped, then captioned) forms one group.

The default threshold was calibrated on edited flowers5 photos
(benchmarks/duplicates_quality.py; figures in the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from foldervision.retrieval.index import ImageIndex

DEFAULT_THRESHOLD = 0.54
"""Euclidean distance between unit vectors (0 = same picture, 2 = opposite), best F1 on the
calibration half of benchmarks/duplicates_quality.py (with the ratio test below)."""
SURE_DISTANCE = 0.35
"""Closer than this is a duplicate whatever the neighbourhood (no false pair at <= 0.40)."""
RATIO = 0.8
BACKGROUND_RANK = 5
"""Between SURE_DISTANCE and the threshold, a pair counts only when it is clearly closer than
the neighbourhood: distance <= RATIO x the distance to either image's BACKGROUND_RANK-th
neighbour. Similar-looking but different flowers sit in a crowd of equally close neighbours;
an edited copy stands out from its crowd. Without this test, precision on the calibration half
fell below 0.9 before recall reached 0.9."""
FIRST_NEIGHBOURS = 8
QUERY_CHUNK = 2048


@dataclass(frozen=True)
class DuplicateGroup:
    """Files of one group, sorted by path; `distances[i]` is files[i]'s distance to files[0]."""

    files: list[str]
    distances: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "distances": self.distances}


def close_pairs(index: ImageIndex, threshold: float) -> list[tuple[int, int, float]]:
    """(id_a, id_b, distance), id_a < id_b, for pairs at most `threshold` apart that pass the
    ratio test (or are closer than SURE_DISTANCE)."""
    if threshold < 0:
        raise ValueError(f"--threshold must be at least 0, got {threshold}.")
    ids = index.store.ids()
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, len(ids), QUERY_CHUNK):
        chunk_ids = ids[start : start + QUERY_CHUNK]
        vectors = index.store.vectors(chunk_ids)
        pending = np.arange(len(chunk_ids))
        neighbours = FIRST_NEIGHBOURS
        background = np.full(len(chunk_ids), np.inf)
        while len(pending):
            distances, found = index.store.search(vectors[pending], neighbours + 1)
            if neighbours == FIRST_NEIGHBOURS and distances.shape[1] > BACKGROUND_RANK:
                background[pending] = distances[:, BACKGROUND_RANK]  # column 0 is the query
            for row, query in enumerate(pending):
                limit = max(
                    min(threshold, RATIO * background[query]), min(threshold, SURE_DISTANCE)
                )
                for distance, other in zip(distances[row], found[row]):
                    if other >= 0 and other != chunk_ids[query] and distance <= limit:
                        key = tuple(sorted((int(chunk_ids[query]), int(other))))
                        pairs[key] = min(float(distance), pairs.get(key, np.inf))
            limits = np.maximum(
                np.minimum(threshold, RATIO * background[pending]), min(threshold, SURE_DISTANCE)
            )
            saturated = (distances[:, -1] <= limits) & (distances.shape[1] == neighbours + 1)
            more_exist = neighbours + 1 < len(ids)
            pending = pending[saturated] if more_exist else pending[:0]
            neighbours *= 2
    return [(a, b, distance) for (a, b), distance in sorted(pairs.items())]


def group_pairs(pairs: list[tuple[int, int, float]]) -> list[list[int]]:
    """Connected components (union-find) of the pairs, each sorted, groups of 2 or more."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    for a, b, _ in pairs:
        root_a, root_b = root(a), root(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    groups: dict[int, list[int]] = {}
    for node in parent:
        groups.setdefault(root(node), []).append(node)
    return [sorted(members) for members in groups.values() if len(members) > 1]


def find_duplicates(
    index: ImageIndex, threshold: float = DEFAULT_THRESHOLD
) -> list[DuplicateGroup]:
    """Groups of near-identical images (paths relative to the database), by first path."""
    groups = []
    for members in group_pairs(close_pairs(index, threshold)):
        paths = index.catalogue.paths_of(members)
        ordered = sorted(members, key=lambda file_id: paths[file_id])
        vectors = index.store.vectors(np.asarray(ordered, dtype=np.int64))
        distances = np.linalg.norm(vectors - vectors[0], axis=1)
        groups.append(
            DuplicateGroup(
                files=[paths[file_id] for file_id in ordered],
                distances=[round(float(distance), 6) for distance in distances],
            )
        )
    return sorted(groups, key=lambda group: group.files[0])
