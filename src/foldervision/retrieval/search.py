"""Nearest neighbours of query images among an index's vectors, with FAISS.

Vectors are unit length, so Euclidean distance ranks exactly as cosine similarity; an exact
flat index answers a query over 10^5 vectors in milliseconds (benchmarks/retrieval_speed.py),
so no approximate index is needed at the sizes this tool is for.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.images import SkippedFile
from foldervision.retrieval.embedder import Embedder
from foldervision.retrieval.index import IndexedVectors

DEFAULT_TOP_K = 4
PARALLEL_QUERY_COUNT = 16
"""Fewer queries than this run on one thread: starting OpenMP threads costs more than it saves."""


@dataclass(frozen=True)
class Match:
    rank: int
    path: str
    distance: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "path": self.path, "distance": self.distance}


@dataclass
class QueryResult:
    """One query's matches, nearest first; this is the `--json` line for that query."""

    query: str
    matches: list[Match] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "results": [match.to_dict() for match in self.matches]}


class VectorSearch:
    """Exact Euclidean k-nearest-neighbour search over a fixed set of vectors."""

    def __init__(self, indexed: IndexedVectors) -> None:
        import faiss

        self.paths = indexed.paths
        dimension = indexed.vectors.shape[1] if len(indexed.paths) else 1
        self._index = faiss.IndexFlatL2(dimension)
        if len(indexed.paths):
            self._index.add(np.ascontiguousarray(indexed.vectors, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.paths)

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, row indices), each (queries, min(k, size)); distances are Euclidean."""
        if k < 1:
            raise ValueError(f"-k must be at least 1, got {k}.")
        k = min(k, len(self))
        if k == 0:
            empty = np.zeros((len(query_vectors), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        queries = np.ascontiguousarray(query_vectors, dtype=np.float32)
        with _faiss_threads(1 if len(queries) < PARALLEL_QUERY_COUNT else None):
            squared, rows = self._index.search(queries, k)
        return np.sqrt(np.maximum(squared, 0.0)), rows

    def matches(self, query_vectors: np.ndarray, k: int) -> list[list[Match]]:
        distances, rows = self.search(query_vectors, k)
        return [
            [
                Match(rank, str(self.paths[row]), float(distance))
                for rank, (distance, row) in enumerate(zip(query_distances, query_rows), start=1)
            ]
            for query_distances, query_rows in zip(distances, rows)
        ]


@contextlib.contextmanager
def _faiss_threads(count: int | None) -> Iterator[None]:
    """Run FAISS on `count` threads (None: leave as is), restoring its setting afterwards."""
    import faiss

    previous = faiss.omp_get_max_threads()
    if count is not None:
        faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def search_files(
    query_paths: Sequence[str | os.PathLike[str]],
    vector_search: VectorSearch,
    embedder: Embedder,
    k: int = DEFAULT_TOP_K,
) -> tuple[list[QueryResult], list[SkippedFile]]:
    """Embed the query files exactly as the database was embedded, then find their neighbours."""
    results: list[QueryResult] = []
    skipped: list[SkippedFile] = []
    for batch in embedder.embed_files(list(query_paths)):
        skipped.extend(batch.skipped)
        if not batch.paths:
            continue
        for path, matches in zip(batch.paths, vector_search.matches(batch.vectors, k)):
            results.append(QueryResult(str(Path(path)), matches))
    return results, skipped
