"""Leave-one-out retrieval quality on a class-per-subfolder folder: P@1, P@4, P@k, mAP, N-S.

Every image is used once as the query against all the others (itself excluded); a result is
relevant when it comes from the query's class subfolder. The N-S score is UKBench's measure,
the mean number of relevant images among the top 4 (here 4 x P@4; UKBench counts the query
itself among its top 4, so its figures are ours plus one where the query ranks first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.reranking import (
    Centring,
    Diffusion,
    QueryExpansion,
    Reranking,
    centred_vectors,
    diffused_order,
    expand_queries,
)

QUERY_CHUNK_SIZE = 512
"""Queries ranked at once: bounds the (chunk x database) distance matrix in memory."""
NS_TOP = 4
"""The N-S score counts relevant images among this many (UKBench's groups hold four)."""


@dataclass(frozen=True)
class RetrievalScores:
    """Leave-one-out figures; `queries` counts images whose class has at least one other image."""

    k: int
    precision_at_k: float
    mean_average_precision: float
    queries: int
    precision_at_1: float = 0.0
    precision_at_4: float = 0.0
    ns_score: float = 0.0
    """Mean number of relevant images among the top 4 (0 to 4)."""

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def leave_one_out_scores(
    vectors: np.ndarray,
    labels: np.ndarray,
    k: int = 4,
    query_vectors: np.ndarray | None = None,
    diffusion: Diffusion | None = None,
    centring: tuple[Centring, np.ndarray] | None = None,
) -> RetrievalScores:
    """P@k and mAP with each row of `vectors` as a query against all other rows.

    Rows are ranked by Euclidean distance (ties broken by row order, so results repeat);
    average precision is taken over the full ranking. `query_vectors` (row i standing for
    image i) lets a benchmark try query-side tricks such as query expansion; `diffusion`
    re-orders each query's nearest others as `search --diffuse` would, and `centring` (with
    the collection's mean of rooted vectors) re-scores them as `search --centre` would.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    labels = np.asarray(labels)
    tops = {"k": k, "1": 1, "4": NS_TOP}
    hits: dict[str, list[np.ndarray]] = {name: [] for name in tops}
    average_precisions: list[np.ndarray] = []
    rescoring = None
    if centring is not None:
        rescoring = (centring[0].shortlist, centred_vectors(vectors, centring[1]))
    for start in range(0, len(vectors), QUERY_CHUNK_SIZE):
        rows = np.arange(start, min(start + QUERY_CHUNK_SIZE, len(vectors)))
        queries = (vectors if query_vectors is None else query_vectors)[rows]
        relevant = _ranked_relevance(queries, vectors, labels, rows, diffusion, rescoring)
        relevant = relevant[relevant.any(axis=1)]
        for name, top in tops.items():
            # Precision over `top` ranks even where fewer other images exist (they count as misses).
            hits[name].append(relevant[:, :top].sum(axis=1) / top)
        average_precisions.append(_average_precision(relevant))
    means = {name: _mean(values) for name, values in hits.items()}
    return RetrievalScores(
        k=k,
        precision_at_k=means["k"],
        mean_average_precision=_mean(average_precisions),
        queries=int(sum(len(values) for values in average_precisions)),
        precision_at_1=means["1"],
        precision_at_4=means["4"],
        ns_score=NS_TOP * means["4"],
    )


def _mean(chunks: list[np.ndarray]) -> float:
    values = np.concatenate(chunks) if chunks else np.zeros(0)
    return float(values.mean()) if values.size else 0.0


def _ranked_relevance(
    queries: np.ndarray,
    vectors: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    diffusion: Diffusion | None = None,
    rescoring: tuple[int, np.ndarray] | None = None,
) -> np.ndarray:
    """(len(rows), N - 1) booleans: is the j-th nearest other image of the query's class?

    `rescoring` (shortlist, centred vectors of every row) re-orders each query's shortlist by
    the centred vectors' similarity, as `Centring` does."""
    squared_distances = squared_euclidean(queries, vectors)
    squared_distances[np.arange(len(rows)), rows] = np.inf  # the query itself comes last
    order = np.argsort(squared_distances, axis=1, kind="stable")[:, :-1]
    if diffusion is not None:
        head = order[:, : diffusion.first_search_size(1)]
        distances = np.sqrt(np.take_along_axis(squared_distances, head, axis=1))
        for row in range(len(order)):
            head[row] = head[row, diffused_order(distances[row], vectors[head[row]], diffusion)]
        order[:, : head.shape[1]] = head
    if rescoring is not None:
        shortlist, centred = rescoring
        head = order[:, :shortlist]
        for row in range(len(order)):
            similarities = centred[head[row]] @ centred[rows[row]]
            head[row] = head[row, np.argsort(-similarities, kind="stable")]
        order[:, : head.shape[1]] = head
    return labels[order] == labels[rows][:, np.newaxis]


def squared_euclidean(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """All pairwise squared Euclidean distances, in float64 so near-ties keep their order."""
    queries = queries.astype(np.float64)
    database = database.astype(np.float64)
    products = queries @ database.T
    norms = (queries**2).sum(axis=1)[:, np.newaxis] + (database**2).sum(axis=1)[np.newaxis, :]
    return np.maximum(norms - 2.0 * products, 0.0)


def _average_precision(relevant: np.ndarray) -> np.ndarray:
    """Mean of precision@i over the ranks i that hold a relevant image, per query."""
    hits = np.cumsum(relevant, axis=1)
    ranks = np.arange(1, relevant.shape[1] + 1)
    precision_at_hits = np.where(relevant, hits / ranks, 0.0)
    return precision_at_hits.sum(axis=1) / np.maximum(relevant.sum(axis=1), 1)


@dataclass(frozen=True)
class LabelledVectors:
    """The stored vectors of a labelled folder's images, row i of class `labels[i]`."""

    vectors: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    class_names: list[str]


def labelled_vectors(image_index: ImageIndex) -> LabelledVectors:
    """The index's vectors of the images in class subfolders, with their classes."""
    from foldervision.datasets import scan_labelled_folder

    labelled = scan_labelled_folder(image_index.database_folder)
    label_of = dict(zip(map(labelled.relative, labelled.paths), labelled.labels.tolist()))
    indexed = image_index.vectors()
    relative_paths = [image_index.relative(path) for path in indexed.paths]
    rows = [row for row, path in enumerate(relative_paths) if path in label_of]
    labels = np.asarray([label_of[relative_paths[row]] for row in rows], dtype=np.int64)
    return LabelledVectors(indexed.vectors[rows], labels, indexed.ids[rows], labelled.class_names)


def leave_one_out_expansion(vectors: np.ndarray, expansion: QueryExpansion) -> np.ndarray:
    """Each row expanded with its nearest other rows (itself left out), ranked exactly: the
    query vectors `search --expand` would make if the image were not in the database."""
    if not expansion.is_on or len(vectors) < 2:
        return vectors
    expanded = []
    fetched = min(expansion.first_search_size, len(vectors) - 1)
    for start in range(0, len(vectors), QUERY_CHUNK_SIZE):
        rows = np.arange(start, min(start + QUERY_CHUNK_SIZE, len(vectors)))
        squared_distances = squared_euclidean(vectors[rows], vectors)
        squared_distances[np.arange(len(rows)), rows] = np.inf
        nearest = np.argpartition(squared_distances, fetched - 1, axis=1)[:, :fetched]
        distances = np.take_along_axis(squared_distances, nearest, axis=1)
        order = np.lexsort((nearest, distances))  # nearest first, ties by row as in a ranking
        nearest = np.take_along_axis(nearest, order, axis=1)
        distances = np.sqrt(np.take_along_axis(distances, order, axis=1))
        expanded.append(expand_queries(vectors[rows], vectors[nearest], distances, expansion))
    return np.concatenate(expanded)


def evaluate_labelled_folder(
    image_index: ImageIndex, k: int = 4, reranking: Reranking | None = None
) -> dict[str, Any]:
    """Leave-one-out scores of an up-to-date index whose folder has one subfolder per class,
    with each query re-ranked by `reranking` when given (the store's own figure,
    `index_precision_at_k`, is not diffused: it measures the index, not the re-ranking)."""
    labelled = labelled_vectors(image_index)
    vectors, labels = labelled.vectors, labelled.labels
    reranking = image_index.applied(reranking)
    diffusion = reranking if isinstance(reranking, Diffusion) else None
    centring = None
    if isinstance(reranking, Centring):
        centring = (reranking, image_index.centring_mean())
    queries = vectors
    if isinstance(reranking, QueryExpansion):
        queries = leave_one_out_expansion(vectors, reranking)
    scores = leave_one_out_scores(vectors, labels, k, queries, diffusion, centring)
    index_precision, index_kind = precision_through_store(
        image_index, queries, labelled.ids, labels, k
    )
    return {
        "folder": str(image_index.database_folder),
        **scores.to_dict(),
        "reranking": reranking.describe() if reranking is not None else None,
        "index_kind": index_kind,
        "index_precision_at_k": index_precision,
        "class_names": labelled.class_names,
        "embedder": image_index.stored_spec().to_dict(),
        "skipped": [skip.to_dict() for skip in image_index.skipped_files()],
    }


def precision_through_store(
    image_index: ImageIndex, vectors: np.ndarray, ids: np.ndarray, labels: np.ndarray, k: int
) -> tuple[float, str | None]:
    """Leave-one-out P@k as `search` answers it (the store's own index, approximate or not),
    `vectors` being the queries (row i: image `ids[i]`, expanded or not).

    The figures above rank exactly with NumPy; this one shows what an approximate index costs.
    """
    label_of_id = dict(zip(ids.tolist(), labels.tolist()))
    precisions = []
    for start in range(0, len(vectors), QUERY_CHUNK_SIZE):
        chunk = slice(start, start + QUERY_CHUNK_SIZE)
        _, found = image_index.store.search(vectors[chunk], k + 1)
        for query_id, row in zip(ids[chunk].tolist(), found.tolist()):
            others = [found_id for found_id in row if found_id != query_id and found_id >= 0][:k]
            hits = sum(label_of_id.get(found_id) == label_of_id[query_id] for found_id in others)
            precisions.append(hits / k)
    kind = image_index.store.index_kind()
    return (float(np.mean(precisions)) if precisions else 0.0), kind
