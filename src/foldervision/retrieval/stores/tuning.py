"""The approximate index's settings, chosen by the recall they reach on the collection itself.

A fixed rule (about sqrt(N) lists, 16 probes) was right for flowers5-like vectors and wrong for
others: on a mixture of 4096 tight clusters it returned 18% of the true top 4 and said nothing
(issue 21). So every time the approximate index is built or retrained, its settings are
measured, like autofaiss does, but by hand (docs/architecture.md says why not autofaiss):

1. `SAMPLE_QUERIES` stored vectors (seeded) are the queries; their exact top `TUNING_K` among
   all stored vectors, themselves excluded, is computed chunk by chunk (bounded memory).
2. For each index candidate (`quantizers` in order of disk cost), probes 1, 2, 4, ... and the
   number of candidates re-ranked exactly are swept; the first setting whose recall@k (of the
   store's answer, after its exact re-ranking) reaches the target is the cheapest one.
3. A setting must scan at most `MAX_SCANNED_FRACTION` of the vectors per query (the latency
   budget; counted, not timed, so that the choice does not depend on a busy machine). With
   `--ann auto`, when nothing reaches the target within it the store uses the exact index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

TARGET_RECALL = 0.95
"""Default `index --recall`: the share of the exact top k the approximate index must return."""
SAMPLE_QUERIES = 1000
"""Queries measured: recall over 4000 neighbours has a standard error under 0.004 at 0.95."""
TUNING_K = 4
"""The k recall is measured at (the CLI's default top k)."""
CANDIDATES = (16, 32, 64)
"""Candidates re-ranked exactly from the stored vectors (16 = 2k + 8, the old fixed count):
fetching 64 vectors costs far less than scanning one more list at 10^6."""
MAX_SCANNED_FRACTION = 1 / 8
"""Latency budget of `--ann auto`: at most 1/8 of the vectors scanned per query. Exact search
costs about 0.35 ms per 1000 vectors on one reference core, so 1/8 of 10^6 is about 45 ms (the
issue's 50 ms goal); scanning more gains too little over exact search to be worth its recall."""
SEED = 0


@dataclass(frozen=True)
class Measured:
    """One setting and the recall@k it reached on the sample."""

    quantizer: str
    lists: int
    probes: int
    candidates: int
    recall: float


def sample_ids(ids: np.ndarray, count: int | None = None, seed: int = SEED) -> np.ndarray:
    """A seeded sample of `count` (default SAMPLE_QUERIES) ids to query with, sorted; all of
    them when there are fewer."""
    count = SAMPLE_QUERIES if count is None else count
    if len(ids) <= count:
        return np.asarray(ids, np.int64)
    return np.sort(np.random.default_rng(seed).choice(ids, count, replace=False)).astype(np.int64)


def exact_neighbours(
    query_ids: np.ndarray,
    queries: np.ndarray,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    k: int = TUNING_K,
) -> np.ndarray:
    """Each query's exact top k ids among every chunk's vectors, itself excluded.

    Chunks are merged into a running top k + 1 (the query itself is among the stored vectors),
    so memory stays at one chunk whatever the collection's size. Rows with fewer than k other
    vectors are padded with -1.
    """
    import faiss

    best_d = np.full((len(queries), k + 1), np.inf, np.float32)
    best_i = np.full((len(queries), k + 1), -1, np.int64)
    for ids, vectors in chunks:
        width = min(k + 1, len(ids))
        distances, rows = faiss.knn(queries, np.ascontiguousarray(vectors, np.float32), width)
        found = np.where(rows >= 0, np.asarray(ids)[np.maximum(rows, 0)], -1)
        merged_d = np.concatenate([best_d, distances], axis=1)
        merged_i = np.concatenate([best_i, found], axis=1)
        order = np.argsort(merged_d, axis=1, kind="stable")[:, : k + 1]
        best_d = np.take_along_axis(merged_d, order, axis=1)
        best_i = np.take_along_axis(merged_i, order, axis=1)
    return without_self(best_i, query_ids, k)


def without_self(found: np.ndarray, query_ids: np.ndarray, width: int) -> np.ndarray:
    """Each row's first `width` ids other than its query's own (-1 padded)."""
    rows = []
    for row, own in zip(found, query_ids):
        others = row[(row != own) & (row >= 0)][:width]
        rows.append(np.pad(others, (0, width - len(others)), constant_values=-1))
    return np.stack(rows) if rows else np.zeros((0, width), np.int64)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true neighbours (ids >= 0 in `truth`) that `found` holds, row by row."""
    hits = total = 0
    for row, wanted in zip(found, truth):
        wanted = wanted[wanted >= 0]
        hits += len(np.intersect1d(row, wanted))
        total += len(wanted)
    return hits / total if total else 1.0


def probe_steps(lists: int, most: int) -> list[int]:
    """1, 2, 4, ... up to `most` (and `most` itself), never more than the lists."""
    most = max(1, min(lists, most))
    steps = [1]
    while steps[-1] * 2 < most:
        steps.append(steps[-1] * 2)
    return steps + ([most] if steps[-1] != most else [])


def sweep(
    index: object,
    quantizer: str,
    lists: int,
    queries: np.ndarray,
    query_ids: np.ndarray,
    truth: np.ndarray,
    target: float,
    most_probes: int,
) -> tuple[Measured | None, list[Measured]]:
    """The cheapest (probes first, then candidates) setting of `index` reaching `target`, and
    every setting measured on the way (the best last when none reached it).

    A store's search returns the top k of `candidates` re-ranked exactly, so its recall is the
    share of true neighbours among the candidates (the query's own id left out).
    """
    measured: list[Measured] = []
    for probes in probe_steps(lists, most_probes):
        index.nprobe = probes  # type: ignore[attr-defined]
        _, found = index.search(queries, CANDIDATES[-1] + 1)  # type: ignore[attr-defined]
        for candidates in CANDIDATES:
            kept = without_self(found, query_ids, candidates)
            setting = Measured(quantizer, lists, probes, candidates, recall_at_k(kept, truth))
            measured.append(setting)
            if setting.recall >= target:
                return setting, measured
    return None, measured


def choose(
    candidates: Sequence[tuple[str, int, Callable[[], object]]],
    queries: np.ndarray,
    query_ids: np.ndarray,
    truth: np.ndarray,
    target: float,
    scanned_fraction: float,
) -> tuple[object, Measured]:
    """Build each (quantizer, lists, build) candidate in turn until one reaches `target` with
    at most `scanned_fraction` of its lists probed: (that index, its setting). When none does,
    the index and setting of the best recall measured (the caller decides what to do)."""
    best: tuple[object, Measured] | None = None
    for quantizer, lists, build in candidates:
        index = build()
        most = max(1, int(lists * scanned_fraction))
        chosen, measured = sweep(index, quantizer, lists, queries, query_ids, truth, target, most)
        top = chosen or max(measured, key=lambda setting: setting.recall)
        if best is None or top.recall > best[1].recall:
            best = (index, top)
        del index
        if chosen is not None:
            break
    assert best is not None, "no index candidates"
    best[0].nprobe = best[1].probes  # type: ignore[attr-defined]
    return best
