"""Near-duplicate images: candidate pairs that scale, checked by their content, then grouped.

Two cheap searches propose pairs, each image asking only for its own few nearest neighbours
(so the cost grows with the number of images, never with their pairs):

- the global vectors, through the store's own k-NN (what `search` uses): they find resized,
  re-saved, cropped, captioned, brightened and mirrored copies, and most turned ones;
- a coarse pixel signature (`verify.signature`: 8 x 8 grey levels of the picture without its
  uniform margins), searched with FAISS as it is, turned 90 and 180 degrees and mirrored: it
  finds what the vectors rank far away, grey copies (colour moves a CNN vector a lot) and
  screenshots (the frame around the photo does too), and any turn. It costs one small decode
  per image and four searches of 64 numbers; embedding turned copies instead would cost four
  passes of the network over every image.

A proposal whose vectors are not close (over `check_distance`) and whose signatures are not
alike in any orientation (under `check_similarity`) is dropped unchecked: no copy of the
calibration half needed such a pair to join its group, and most proposals of different photos
are such pairs. Each remaining pair is checked by `verify.compare` (keypoints, a geometric fit,
the aligned pixels) unless its vectors are so close that no pair of different photos was seen
there; the accepted pairs are joined with union-find, so a chain of edits of one photo forms one
group, and a pair whose files are already joined is not checked at all (it could not change a
group: a burst of 30 copies needs 29 checks, not 435). The checking reads only the images that
are in a proposed pair, in an order that keeps each one's keypoints at hand (a bounded cache),
so its cost grows with the number of proposals.

Every threshold (DuplicateSettings) was chosen on the calibration half of edited flowers5
photos in benchmarks/duplicates_quality.py; the other half reports.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import foldervision.retrieval.verify as verify
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.search import path_in
from foldervision.retrieval.stores import ann

DEFAULT_THRESHOLD = 0.9
"""Largest distance between the global vectors of two copies (Euclidean, unit vectors: 0 is
the same picture, 2 opposite). The five settings below are the calibration half's choice:
the best pair recall at a pair precision of 0.99 or more (benchmarks/duplicates_quality.py)."""
SURE_DISTANCE = 0.0
"""Up to this distance a pair is a duplicate without looking at its pixels: only identical
vectors, since every larger value let in some pair of different photos on the calibration
half while checking costs no recall."""
MIN_INLIERS = 5
"""Keypoint matches that agree on one turn, scale and shift."""
MIN_INLIER_RATIO = 0.3
"""Inliers among the ratio-test matches: chance matches between different photos (two roses
on black) rarely agree on one transform; a copy's mostly do."""
MIN_CORRELATION = 0.8
"""Median block correlation of the aligned pixels (verify.aligned_correlation)."""
CHECK_DISTANCE = 0.625
CHECK_SIMILARITY = 0.95
"""A proposal is checked when its vectors are this close, or its signatures this alike in their
best orientation (`verify.best_orientation_similarity`); other proposals are dropped. The
calibration half's choice: the fewest checks that keep its recall at the settings above
(chosen again with two-scale vectors; one-scale vectors chose 0.675 and 0.9)."""

VECTOR_NEIGHBOURS = 6
"""Neighbours each image asks the store for; twice as many when all of them are closer than
EXPAND_DISTANCE, and so on, so that a large group of copies is found whole."""
EXPAND_DISTANCE = 0.3
SIGNATURE_NEIGHBOURS = 3
"""Neighbours each image asks the signature index for, in each of its four orientations."""
MIN_SIGNATURE_SIMILARITY = 0.6
"""Signature pairs less alike than this (cosine) are not proposed."""
SIGNATURE_LISTS_FROM = 20_000
"""From this many signatures on, they are searched through inverted lists (`_signature_index`)
rather than one by one: four exact searches of 10^5 signatures took 40 s, over half of
proposing, and grow with N^2."""
SIGNATURE_PROBES = 16
TRAINING_POINTS_PER_LIST = 39
"""FAISS's k-means wants at least this many points per list."""
QUERY_CHUNK = 2048
PICTURE_CACHE_BYTES = 1_200_000_000
"""Memory for the pictures (reduced pixels and keypoints, about 80 kB each at 256 px) kept
while checking pairs: about 15,000 of them. Pictures dropped are read again when a later pair
needs them (2,048 pictures read 10^5 files 195,396 times at 10^5 in the scale benchmark; 2 GB
instead of 1.2 took the check at 10^5 from 476.6 to 472.6 s, for 2,955 MB at peak instead of
2,117: not worth it)."""
KEYPOINT_CACHE_BYTES = 1_000_000_000
"""Memory for the keypoints of pictures dropped from the cache above (about 40 kB each with
their mirror image's): a picture read again then skips its keypoint search, two thirds of
reading it."""
CHECK_BATCH = 256


@dataclass(frozen=True)
class DuplicateSettings:
    """When a proposed pair is a duplicate: `threshold` bounds every pair's vector distance;
    under `sure_distance` nothing else is asked; otherwise its content must match."""

    threshold: float = DEFAULT_THRESHOLD
    sure_distance: float = SURE_DISTANCE
    min_inliers: int = MIN_INLIERS
    min_inlier_ratio: float = MIN_INLIER_RATIO
    min_correlation: float = MIN_CORRELATION
    check_distance: float = CHECK_DISTANCE
    check_similarity: float = CHECK_SIMILARITY

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError(f"--threshold must be at least 0, got {self.threshold}.")

    def is_sure(self, pair: PairEvidence) -> bool:
        """So close that it is a duplicate without looking at its pixels."""
        return pair.distance <= min(self.sure_distance, self.threshold)

    def worth_checking(self, pair: PairEvidence) -> bool:
        """Within the threshold, not sure, and close or alike enough to be a copy at all."""
        if pair.distance > self.threshold or self.is_sure(pair):
            return False
        alike = not np.isnan(pair.similarity) and pair.similarity >= self.check_similarity
        return pair.distance <= self.check_distance or alike

    def accepts(self, pair: PairEvidence) -> bool:
        if pair.distance > self.threshold:
            return False
        if self.is_sure(pair):
            return True
        return (
            self.worth_checking(pair)
            and pair.inliers >= self.min_inliers
            and pair.inliers >= self.min_inlier_ratio * pair.matches
            and pair.correlation >= self.min_correlation
        )


@dataclass(frozen=True)
class PairEvidence:
    """A proposed pair (catalogue ids, first < second) and everything known about it."""

    first: int
    second: int
    distance: float
    """Between the global vectors."""
    similarity: float
    """Of the pixel signatures in their best orientation; nan when a file has none."""
    inliers: int = 0
    matches: int = 0
    correlation: float = 0.0
    mirrored: bool = False


@dataclass(frozen=True)
class DuplicateGroup:
    """Files of one group, sorted by path; `distances[i]` is files[i]'s distance to files[0];
    `keep` is the suggested copy to keep and `why` says why (`retrieval.keeper`).

    Paths are relative to the database folder, like a search's matches."""

    files: list[str]
    distances: list[float]
    keep: str = ""
    why: str = ""

    def in_folder(self, folder: str | os.PathLike[str]) -> DuplicateGroup:
        """The same group with each path under `folder`, as the command line prints it."""
        return DuplicateGroup(
            [path_in(folder, path) for path in self.files],
            self.distances,
            path_in(folder, self.keep) if self.keep else "",
            self.why,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "distances": self.distances, "keep": self.keep,
                "why": self.why}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Proposals.


def vector_candidates(
    index: ImageIndex, threshold: float, among: np.ndarray | None = None
) -> dict[tuple[int, int], float]:
    """{(id_a, id_b): distance} of each image's nearest neighbours up to `threshold` apart;
    `among` (a filter's ids) keeps both files of every pair among those ids."""
    ids = _ids_among(index, among)
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, len(ids), QUERY_CHUNK):
        chunk_ids = ids[start : start + QUERY_CHUNK]
        vectors = index.store.vectors(chunk_ids)
        pending = np.arange(len(chunk_ids))
        neighbours = VECTOR_NEIGHBOURS
        while len(pending):
            distances, found = index.store.search(vectors[pending], neighbours + 1, ids=among)
            for row, query in enumerate(pending):
                for distance, other in zip(distances[row], found[row]):
                    if other >= 0 and other != chunk_ids[query] and distance <= threshold:
                        key = _key(int(chunk_ids[query]), int(other))
                        pairs[key] = min(float(distance), pairs.get(key, np.inf))
            close = distances[:, -1] <= min(threshold, EXPAND_DISTANCE)
            full = distances.shape[1] == neighbours + 1 and neighbours + 1 < len(ids)
            pending = pending[close] if full else pending[:0]
            neighbours *= 2
    return pairs


def signature_candidates(ids: np.ndarray, signatures: np.ndarray) -> dict[tuple[int, int], float]:
    """{(id_a, id_b): similarity} of each signature's nearest, in four orientations."""
    if len(ids) < 2:
        return {}
    search = _signature_index(signatures)
    pairs: dict[tuple[int, int], float] = {}
    queries = {"as it is": signatures, **verify.turned_signatures(signatures)}
    for turned in queries.values():
        similarities, found = search.search(turned, min(len(ids), SIGNATURE_NEIGHBOURS + 1))
        for row, (scores, others) in enumerate(zip(similarities, found)):
            for similarity, other in zip(scores, others):
                if other < 0 or other == row or similarity < MIN_SIGNATURE_SIMILARITY:
                    continue
                key = _key(int(ids[row]), int(ids[other]))
                pairs[key] = max(float(similarity), pairs.get(key, -1.0))
    return pairs


def _signature_index(signatures: np.ndarray) -> Any:
    """A FAISS inner-product index of the signatures: exact for a few, else inverted lists
    (about 4 sqrt(N), SIGNATURE_PROBES of them scanned per query). A copy's signature is
    nearly its original's, so the two share a list; at 10^5 the lists found 99% of the pairs
    alike at CHECK_SIMILARITY that the exact search found (the rest: ties among a large group's
    copies) in a sixth of its time (docs/benchmarks.md)."""
    import faiss

    count, dimension = signatures.shape
    if count < SIGNATURE_LISTS_FROM:
        index = faiss.IndexFlatIP(dimension)
    else:
        lists = min(4 * ann.list_count(count), count // TRAINING_POINTS_PER_LIST)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists,
                                   faiss.METRIC_INNER_PRODUCT)  # fmt: skip
        sample_size = min(count, 2 * TRAINING_POINTS_PER_LIST * lists)
        sample = np.random.default_rng(0).choice(count, sample_size, replace=False)
        index.train(signatures[np.sort(sample)])
        index.nprobe = SIGNATURE_PROBES
    index.add(signatures)
    return index


def read_signatures(
    index: ImageIndex, ids: np.ndarray, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, signatures) of the files that have one, in the order of `ids`; only files that
    are new or changed since the last run are decoded (`signature_cache`)."""
    from foldervision.retrieval.signature_cache import SignatureCache

    paths = index.catalogue.paths_of(ids)
    states = index.catalogue.known_states()
    folder = index.database_folder
    with SignatureCache.open(index.index_path) as cache:
        known = cache.lookup(states)
        missing = [path for path in paths.values() if path not in known]
        with ThreadPoolExecutor(max_workers=workers or _workers()) as pool:
            computed = dict(zip(missing, pool.map(
                lambda path: verify.signature_of_file(folder / path), missing)))  # fmt: skip
        cache.store(states, computed)
    found = {**known, **computed}
    signatures = [found.get(paths[int(i)]) for i in ids]
    readable = [position for position, signature in enumerate(signatures) if signature is not None]
    if not readable:
        return ids[:0], np.zeros((0, verify.SIGNATURE_SIDE**2), np.float32)
    return ids[readable], np.stack([signatures[p] for p in readable]).astype(np.float32)


def candidate_pairs(
    index: ImageIndex, threshold: float, among: np.ndarray | None = None
) -> list[PairEvidence]:
    """Pairs proposed by the vectors or the signatures, with their vector distance.

    Every image asks the store for its neighbours, so the store holds the vectors in memory
    meanwhile where it can (`VectorStore.holding_vectors`)."""
    with index.store.holding_vectors():
        by_vector = vector_candidates(index, threshold, among)
        signature_ids, signatures = read_signatures(index, _ids_among(index, among))
        by_signature = signature_candidates(signature_ids, signatures)
        keys = sorted(by_vector.keys() | by_signature.keys())
        distances = _vector_distances(index, [key for key in keys if key not in by_vector])
    similarities = _signature_similarities(keys, signature_ids, signatures)
    return [
        PairEvidence(a, b, by_vector.get((a, b), distances.get((a, b), np.inf)), similarity)
        for (a, b), similarity in zip(keys, similarities)
    ]


def _signature_similarities(
    keys: list[tuple[int, int]], ids: np.ndarray, signatures: np.ndarray
) -> list[float]:
    """Each pair's signature similarity in the best orientation; nan where a file has none."""
    row_of = {int(file_id): row for row, file_id in enumerate(ids)}
    similarities = np.full(len(keys), np.nan, dtype=np.float64)
    known = [n for n, (a, b) in enumerate(keys) if a in row_of and b in row_of]
    for start in range(0, len(known), QUERY_CHUNK):
        chunk = known[start : start + QUERY_CHUNK]
        first = signatures[[row_of[keys[n][0]] for n in chunk]]
        second = signatures[[row_of[keys[n][1]] for n in chunk]]
        similarities[chunk] = verify.best_orientation_similarity(first, second)
    return similarities.tolist()


def _vector_distances(
    index: ImageIndex, keys: list[tuple[int, int]]
) -> dict[tuple[int, int], float]:
    distances = {}
    for start in range(0, len(keys), QUERY_CHUNK):
        chunk = keys[start : start + QUERY_CHUNK]
        ids = np.unique(np.asarray(chunk, dtype=np.int64).ravel())
        vectors = dict(zip(ids.tolist(), index.store.vectors(ids)))
        for a, b in chunk:
            distances[(a, b)] = float(np.linalg.norm(vectors[a] - vectors[b]))
    return distances


# --------------------------------------------------------------------------------------------
# Checking.


def check_pairs(
    index: ImageIndex,
    pairs: list[PairEvidence],
    needs_check: Callable[[PairEvidence], bool] = lambda pair: True,
    workers: int | None = None,
    settings: DuplicateSettings | None = None,
) -> tuple[list[PairEvidence], int]:
    """The pairs with their content compared (those `needs_check` accepts), same order, and
    the number of pairs compared.

    With the `settings` that will decide, only what decides is done: a pair whose files are
    already joined by accepted pairs is left unchecked (the groups come out the same), and the
    pixels of a fit with too few inliers are not correlated. Without, every pair gets all its
    evidence (to score other settings afterwards)."""
    import cv2

    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the threads below already use every core
    try:
        return _check_pairs(index, pairs, needs_check, workers, settings)
    finally:
        cv2.setNumThreads(cv2_threads)


def _check_pairs(
    index: ImageIndex,
    pairs: list[PairEvidence],
    needs_check: Callable[[PairEvidence], bool],
    workers: int | None,
    settings: DuplicateSettings | None,
) -> tuple[list[PairEvidence], int]:
    paths = index.catalogue.paths_of({i for pair in pairs for i in (pair.first, pair.second)})
    pictures = PictureCache(index.database_folder, paths, PICTURE_CACHE_BYTES, settings,
                            keypoint_bytes=KEYPOINT_CACHE_BYTES)  # fmt: skip
    checked: dict[tuple[int, int], PairEvidence] = {}
    batches = _CheckBatches([pair for pair in _locality_order(pairs) if needs_check(pair)],
                            skip_joined=settings is not None)  # fmt: skip
    with ThreadPoolExecutor(workers or _workers(), initializer=_one_faiss_thread) as pool:
        for batch in batches:
            pictures.load({i for pair in batch for i in (pair.first, pair.second)}, pool)
            results = list(pool.map(pictures.compare, batch))
            for evidence in results:
                checked[(evidence.first, evidence.second)] = evidence
            if settings is not None:
                batches.join(evidence for evidence in results if settings.accepts(evidence))
    return [checked.get((pair.first, pair.second), pair) for pair in pairs], batches.checks


class _CheckBatches:
    """Batches of pairs to check, in the given order; with `skip_joined`, a pair whose files
    are already in one group is dropped, and one that a pair of the same batch could join is
    put off to a later batch (it is dropped then if the batch did join it)."""

    def __init__(self, pairs: list[PairEvidence], skip_joined: bool) -> None:
        self.pending = deque(pairs)
        self.skip_joined = skip_joined
        self.parent: dict[int, int] = {}
        self.checks = 0

    def __iter__(self) -> Iterator[list[PairEvidence]]:
        while self.pending:
            batch = self._next_batch()
            self.checks += len(batch)
            if batch:
                yield batch

    def join(self, pairs: Iterable[PairEvidence]) -> None:
        for pair in pairs:
            first, second = self._root(pair.first), self._root(pair.second)
            if first != second:
                self.parent[max(first, second)] = min(first, second)

    def _next_batch(self) -> list[PairEvidence]:
        if not self.skip_joined:
            return [self.pending.popleft() for _ in range(min(CHECK_BATCH, len(self.pending)))]
        batch: list[PairEvidence] = []
        put_off: list[PairEvidence] = []
        planned: dict[int, int] = {}  # groups this batch may join, by their roots

        def planned_root(node: int) -> int:
            while planned.get(node, node) != node:
                node = planned[node]
            return node

        scanned = 0
        while self.pending and len(batch) < CHECK_BATCH and scanned < CHECK_BATCH * 8:
            pair = self.pending.popleft()
            scanned += 1
            first, second = self._root(pair.first), self._root(pair.second)
            if first == second:
                continue
            first, second = planned_root(first), planned_root(second)
            if first == second:
                put_off.append(pair)
                continue
            planned[max(first, second)] = min(first, second)
            batch.append(pair)
        self.pending.extendleft(reversed(put_off))
        return batch

    def _root(self, node: int) -> int:
        self.parent.setdefault(node, node)
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node


class PictureCache:
    """Pictures by id, the least recently used dropped beyond `max_bytes` (keypoints of 10^5
    images do not fit in memory; those of a neighbourhood do)."""

    def __init__(
        self, folder: Path, paths: dict[int, str], max_bytes: int,
        settings: DuplicateSettings | None = None, keypoint_bytes: int = 0,
    ) -> None:  # fmt: skip
        self.folder, self.paths, self.max_bytes = folder, paths, max_bytes
        self.bytes = 0
        self.max_keypoint_bytes, self.keypoint_bytes = keypoint_bytes, 0
        self._keypoints: OrderedDict[int, verify.Keypoints] = OrderedDict()
        """Keypoints of pictures dropped, the least recently dropped first out beyond
        `max_keypoint_bytes`: a picture read again is then only decoded."""
        self.fit_needs = (
            (settings.min_inliers, settings.min_inlier_ratio, settings.min_correlation)
            if settings
            else (0, 0.0, np.inf)
        )
        """(inliers, share of the matches) a fit needs before its pixels are correlated, and
        the correlation that makes a fit as it is enough (no mirror image tried)."""
        self._mirrored_lock = threading.Lock()
        self._pictures: OrderedDict[int, verify.Picture | None] = OrderedDict()
        self.reads = 0
        """Files read so far: with a good order, close to the number of distinct images."""

    def load(self, ids: Iterable[int], pool: ThreadPoolExecutor) -> None:
        wanted = [i for i in ids if i not in self._pictures]
        self.reads += len(wanted)
        known = [self._kept_keypoints(i) for i in wanted]
        for i, picture in zip(wanted, pool.map(self._read, wanted, known)):
            self._pictures[i] = picture
            self.bytes += verify.picture_bytes(picture)
        for i in ids:
            self._pictures.move_to_end(i)
        while self.bytes > self.max_bytes and len(self._pictures) > CHECK_BATCH * 2:
            dropped_id, dropped = self._pictures.popitem(last=False)
            self.bytes -= verify.picture_bytes(dropped)
            if dropped is not None:
                self._keep_keypoints(dropped_id, dropped.keypoints())

    def _keep_keypoints(self, file_id: int, keypoints: verify.Keypoints) -> None:
        if keypoints.nbytes > self.max_keypoint_bytes:
            return
        self._keypoints[file_id] = keypoints
        self.keypoint_bytes += keypoints.nbytes
        while self.keypoint_bytes > self.max_keypoint_bytes:
            self.keypoint_bytes -= self._keypoints.popitem(last=False)[1].nbytes

    def _kept_keypoints(self, file_id: int) -> verify.Keypoints | None:
        keypoints = self._keypoints.pop(file_id, None)
        if keypoints is not None:
            self.keypoint_bytes -= keypoints.nbytes
        return keypoints

    def _read(self, file_id: int, known: verify.Keypoints | None) -> verify.Picture | None:
        return verify.read_picture(self.folder / self.paths[file_id], known)

    def compare(self, pair: PairEvidence) -> PairEvidence:
        first, second = self._pictures.get(pair.first), self._pictures.get(pair.second)
        if first is None or second is None:
            return pair
        had_mirror = second.has_mirrored_features
        evidence = verify.compare(first, second, *self.fit_needs)
        if not had_mirror and second.has_mirrored_features:
            with self._mirrored_lock:  # counted once the compare has made them
                self.bytes += verify.features_bytes(second.mirrored_features)
        return replace(pair, inliers=evidence.inliers, matches=evidence.matches,
                       correlation=evidence.correlation, mirrored=evidence.mirrored)  # fmt: skip


def _one_faiss_thread() -> None:
    """Each checking thread's keypoint searches on that thread alone. FAISS's OpenMP setting
    is per thread: set in the caller, it never reached these threads, and each tiny search
    woke a team of OpenMP threads (from two threads a pair's search took 3.2x as long; the
    check at 10^4 took 0.72x the time once this was fixed, docs/benchmarks.md)."""
    import faiss

    faiss.omp_set_num_threads(1)


def _locality_order(pairs: list[PairEvidence]) -> list[PairEvidence]:
    """Pairs in breadth-first order of the graph they make, each when its later image comes:
    neighbouring pairs share images, so a picture is read once and reused from the cache."""
    neighbours: dict[int, list[int]] = {}
    for pair in pairs:
        neighbours.setdefault(pair.first, []).append(pair.second)
        neighbours.setdefault(pair.second, []).append(pair.first)
    rank: dict[int, int] = {}
    for start in sorted(neighbours):
        if start in rank:
            continue
        rank[start] = len(rank)
        queue = deque([start])
        while queue:
            for other in neighbours[queue.popleft()]:
                if other not in rank:
                    rank[other] = len(rank)
                    queue.append(other)

    def position(pair: PairEvidence) -> tuple[int, int]:
        first, second = sorted((rank[pair.first], rank[pair.second]))
        return second, first

    return sorted(pairs, key=position)


# --------------------------------------------------------------------------------------------
# Deciding and grouping.


@dataclass
class DuplicateSearch:
    """One run's proposals and verdicts, kept so a benchmark can score other thresholds."""

    settings: DuplicateSettings
    pairs: list[PairEvidence] = field(default_factory=list)
    checks: int = 0
    """Pairs whose pictures were compared."""

    def accepted(self, settings: DuplicateSettings | None = None) -> list[PairEvidence]:
        settings = settings or self.settings
        return [pair for pair in self.pairs if settings.accepts(pair)]


def search_pairs(
    index: ImageIndex,
    settings: DuplicateSettings,
    check_all: bool = False,
    among: np.ndarray | None = None,
) -> DuplicateSearch:
    """Propose pairs and check those the settings cannot decide from their distance alone
    (`check_all`: every proposal, to score other settings afterwards)."""
    proposals = candidate_pairs(index, settings.threshold, among)

    def undecided(pair: PairEvidence) -> bool:
        return check_all or settings.worth_checking(pair)

    deciding = None if check_all else settings
    pairs, checks = check_pairs(index, proposals, undecided, settings=deciding)
    return DuplicateSearch(settings, pairs, checks)


def group_pairs(pairs: Iterable[tuple[int, int, Any]]) -> list[list[int]]:
    """Connected components (union-find) of the pairs, each sorted, groups of 2 or more."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    for a, b, *_ in pairs:
        root_a, root_b = root(a), root(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    groups: dict[int, list[int]] = {}
    for node in parent:
        groups.setdefault(root(node), []).append(node)
    return [sorted(members) for members in groups.values() if len(members) > 1]


def find_duplicates(
    index: ImageIndex,
    settings: DuplicateSettings | None = None,
    keep_under: Iterable[str] = (),
    among: np.ndarray | None = None,
    sort: str = "path",
) -> list[DuplicateGroup]:
    """Groups of copies of one photo (paths relative to the database), each with the copy to
    keep; files under a `keep_under` folder (relative) are always kept. `among` (a filter's
    ids) looks only at those files; `sort`: by first path, or newest first ("taken")."""
    from foldervision.retrieval.keeper import choose_keeper

    if sort not in GROUP_ORDERS:
        raise ValueError(f"--sort {sort}: choose one of {', '.join(GROUP_ORDERS)}.")
    search = search_pairs(index, settings or DuplicateSettings(), among=among)
    accepted = [(pair.first, pair.second) for pair in search.accepted()]
    found: list[tuple[DuplicateGroup, list[int]]] = []
    for members in group_pairs(accepted):
        paths = index.catalogue.paths_of(members)
        ordered = sorted(members, key=lambda file_id: paths[file_id])
        vectors = index.store.vectors(np.asarray(ordered, dtype=np.int64))
        distances = np.linalg.norm(vectors - vectors[0], axis=1)
        files = [paths[file_id] for file_id in ordered]
        keep, why = choose_keeper(index.database_folder, files, keep_under)
        group = DuplicateGroup(
            files=files,
            distances=[round(float(distance), 6) for distance in distances],
            keep=keep,
            why=why,
        )
        found.append((group, ordered))
    found.sort(key=lambda pair: pair[0].files[0])
    if sort == "taken":
        taken = index.catalogue.photos.taken_of([i for _, members in found for i in members])
        found.sort(key=lambda pair: max(taken.get(i, "") for i in pair[1]), reverse=True)
    return [group for group, _ in found]


GROUP_ORDERS = ("path", "taken")
"""Groups by their first path, or newest first (by the latest capture time among their files)."""


def _ids_among(index: ImageIndex, among: np.ndarray | None) -> np.ndarray:
    """The store's ids, or those of them a filter keeps."""
    ids = index.store.ids()
    return ids if among is None else np.intersect1d(among, ids)


def _key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def _workers() -> int:
    return min(8, os.cpu_count() or 2)
