"""Near-duplicate images: pairs closer than a threshold, grouped with union-find.

Every indexed vector asks the store for its nearest neighbours (the store's own index, so the
search scales like `search` does, never an all-pairs loop); a query whose neighbours are all
under the threshold asks again for twice as many, so a large group is found whole. Pairs
under the threshold are joined with union-find, so a chain of edits of one photo (resized,
then cropped, then captioned) forms one group.

A pair that misses the threshold or the ratio test but is among a query's first neighbours and
within RECHECK_FACTOR x the threshold gets a second, pixel-level look (`pixel_signature`): the
edge maps of the two pictures' centres at 32 x 32, compared by correlation. Turning a photo a
few degrees or brightening it moves its CNN vector a lot but its coarse edges hardly at all,
while two different photos of similar flowers have unrelated edges.

The default threshold and the recheck were calibrated on edited flowers5 photos
(benchmarks/duplicates_quality.py; figures in the README).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.images import ImageLoadError, load_image
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.search import path_in

DEFAULT_THRESHOLD = 0.54
"""Euclidean distance between unit vectors (0 = same picture, 2 = opposite); best F1 on the
calibration half of benchmarks/duplicates_quality.py with the ratio test below. With the pixel
recheck the best there is 0.44 (precision 1.000 vs 0.976, same recall); kept at 0.54 because
0.44 loses the captioned copy planted in tests/retrieval/test_retrieval_duplicates.py."""
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
RECHECK_FACTOR = 1.5
"""Pairs up to this x the threshold (0.81 at the default), among a query's FIRST_NEIGHBOURS
nearest, that the vectors alone reject are compared pixel by pixel (`pixel_signature`)."""
PIXEL_MATCH = 0.6
"""Edge-map correlation from which a rechecked pair is a duplicate. On the calibration half no
pair of different photos under 0.8 reached 0.53; turned, brighter and captioned copies the
vectors missed mostly scored 0.6-0.9."""
SIGNATURE_SIZE = 32
SIGNATURE_CENTRE = 0.7
"""The central 70% of each side: leaves out a rotation's black corners and a caption bar."""


@dataclass(frozen=True)
class DuplicateGroup:
    """Files of one group, sorted by path; `distances[i]` is files[i]'s distance to files[0].

    Paths are relative to the database folder, like a search's matches."""

    files: list[str]
    distances: list[float]

    def in_folder(self, folder: str | os.PathLike[str]) -> DuplicateGroup:
        """The same group with each path under `folder`, as the command line prints it."""
        return DuplicateGroup([path_in(folder, path) for path in self.files], self.distances)

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "distances": self.distances}


def pixel_signature(path: str | Path) -> np.ndarray | None:
    """Unit-norm, zero-mean gradient magnitudes of the picture's centre, grey, at 32 x 32.

    Zero mean and unit norm make it blind to brightness and contrast; the coarse grid to a
    few degrees of rotation, a few percent of crop and re-compression. None if unreadable.
    """
    try:
        grey = load_image(path, (4 * SIGNATURE_SIZE, 4 * SIGNATURE_SIZE), "grayscale")
    except (ImageLoadError, FileNotFoundError):
        return None
    side = grey.shape[0]
    margin = round(side * (1 - SIGNATURE_CENTRE) / 2)
    centre = grey[margin : side - margin, margin : side - margin, 0].astype(np.float32)
    small = _area_resize(centre, SIGNATURE_SIZE + 1)
    edges = np.hypot(np.diff(small, axis=1)[:-1], np.diff(small, axis=0)[:, :-1]).ravel()
    edges -= edges.mean()
    norm = float(np.linalg.norm(edges))
    return edges / norm if norm > 0 else None


def _area_resize(pixels: np.ndarray, size: int) -> np.ndarray:
    rows = np.linspace(0, pixels.shape[0], size + 1).astype(int)
    columns = np.linspace(0, pixels.shape[1], size + 1).astype(int)
    summed = np.add.reduceat(np.add.reduceat(pixels, rows[:-1], axis=0), columns[:-1], axis=1)
    return summed / np.outer(np.diff(rows), np.diff(columns))


def close_pairs(
    index: ImageIndex,
    threshold: float,
    signatures: dict[int, np.ndarray | None] | None = None,
    among: np.ndarray | None = None,
) -> list[tuple[int, int, float]]:
    """(id_a, id_b, distance), id_a < id_b, for pairs at most `threshold` apart that pass the
    ratio test (or are closer than SURE_DISTANCE), and pairs up to RECHECK_FACTOR x threshold
    whose pictures match pixel by pixel. `signatures` caches `pixel_signature` by id between
    calls; `among` (a filter's ids) keeps both files of every pair among those ids."""
    if threshold < 0:
        raise ValueError(f"--threshold must be at least 0, got {threshold}.")
    ids = index.store.ids() if among is None else np.intersect1d(among, index.store.ids())
    pairs: dict[tuple[int, int], float] = {}
    recheck: dict[tuple[int, int], float] = {}
    for start in range(0, len(ids), QUERY_CHUNK):
        chunk_ids = ids[start : start + QUERY_CHUNK]
        vectors = index.store.vectors(chunk_ids)
        pending = np.arange(len(chunk_ids))
        neighbours = FIRST_NEIGHBOURS
        background = np.full(len(chunk_ids), np.inf)
        while len(pending):
            distances, found = index.store.search(vectors[pending], neighbours + 1, ids=among)
            if neighbours == FIRST_NEIGHBOURS and distances.shape[1] > BACKGROUND_RANK:
                background[pending] = distances[:, BACKGROUND_RANK]  # column 0 is the query
            for row, query in enumerate(pending):
                limit = max(
                    min(threshold, RATIO * background[query]), min(threshold, SURE_DISTANCE)
                )
                for distance, other in zip(distances[row], found[row]):
                    if other < 0 or other == chunk_ids[query]:
                        continue
                    key = tuple(sorted((int(chunk_ids[query]), int(other))))
                    if distance <= limit:
                        pairs[key] = min(float(distance), pairs.get(key, np.inf))
                    elif distance <= threshold * RECHECK_FACTOR:
                        recheck[key] = float(distance)
            limits = np.maximum(
                np.minimum(threshold, RATIO * background[pending]), min(threshold, SURE_DISTANCE)
            )
            saturated = (distances[:, -1] <= limits) & (distances.shape[1] == neighbours + 1)
            more_exist = neighbours + 1 < len(ids)
            pending = pending[saturated] if more_exist else pending[:0]
            neighbours *= 2
    pairs.update(_pixel_matches(index, recheck.keys() - pairs.keys(), recheck, signatures))
    return [(a, b, distance) for (a, b), distance in sorted(pairs.items())]


def _pixel_matches(
    index: ImageIndex,
    keys: set[tuple[int, int]],
    distances: dict[tuple[int, int], float],
    signatures: dict[int, np.ndarray | None] | None,
) -> dict[tuple[int, int], float]:
    """The candidate pairs whose pixel signatures correlate at least PIXEL_MATCH."""
    signatures = {} if signatures is None else signatures
    wanted = sorted({file_id for key in keys for file_id in key} - signatures.keys())
    for file_id, path in index.catalogue.paths_of(wanted).items():
        signatures[file_id] = pixel_signature(index.database_folder / path)
    matches = {}
    for a, b in keys:
        first, second = signatures.get(a), signatures.get(b)
        if first is not None and second is not None and float(first @ second) >= PIXEL_MATCH:
            matches[(a, b)] = distances[(a, b)]
    return matches


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


GROUP_ORDERS = ("path", "taken")
"""Groups by their first path, or newest first (by the latest capture time among their files)."""


def find_duplicates(
    index: ImageIndex,
    threshold: float = DEFAULT_THRESHOLD,
    among: np.ndarray | None = None,
    sort: str = "path",
) -> list[DuplicateGroup]:
    """Groups of near-identical images (paths relative to the database), in `sort` order.

    `among` (a filter's ids) looks only at those files: both sides of every pair among them.
    """
    if sort not in GROUP_ORDERS:
        raise ValueError(f"--sort {sort}: choose one of {', '.join(GROUP_ORDERS)}.")
    found = []
    for members in group_pairs(close_pairs(index, threshold, among=among)):
        paths = index.catalogue.paths_of(members)
        ordered = sorted(members, key=lambda file_id: paths[file_id])
        vectors = index.store.vectors(np.asarray(ordered, dtype=np.int64))
        distances = np.linalg.norm(vectors - vectors[0], axis=1)
        group = DuplicateGroup(
            files=[paths[file_id] for file_id in ordered],
            distances=[round(float(distance), 6) for distance in distances],
        )
        found.append((group, ordered))
    found.sort(key=lambda pair: pair[0].files[0])
    if sort == "taken":
        taken = index.catalogue.photos.taken_of([i for _, members in found for i in members])
        found.sort(key=lambda pair: max(taken.get(i, "") for i in pair[1]), reverse=True)
    return [group for group, _ in found]
