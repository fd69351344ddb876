"""Where vectors live and how nearest neighbours are found: one small registry of stores.

A store holds unit vectors keyed by the catalogue's stable integer ids: it adds (or replaces)
and removes vectors by id, and answers k-nearest-neighbour queries with (distances, ids).
The catalogue (`retrieval.catalogue`) stays the record of which file has which id, so a store
never needs to know about paths, and a store that outgrows one machine can be swapped in.

`--store faiss` (the default) keeps the vectors in the catalogue's own SQLite file and searches
them with FAISS; other stores register a factory under their name.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from foldervision.retrieval.catalogue import Catalogue
    from foldervision.retrieval.embedder import EmbedderSpec

DEFAULT_STORE = "faiss"
PARALLEL_QUERY_COUNT = 16
"""Fewer queries than this run on one thread: starting OpenMP threads costs more than it saves."""


class VectorStore(Protocol):
    """What the index needs from a vector store."""

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under these ids, replacing any vector an id already has."""

    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        """Drop the vectors of these ids (unknown ids are ignored)."""

    def ids(self) -> np.ndarray:
        """Every id that has a vector."""

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of these ids, in that order (each id must be present)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Euclidean distances, ids), each (queries, min(k, len)); nearest first."""

    def __len__(self) -> int: ...

    def close(self) -> None: ...


_STORES: dict[str, str] = {}
"""Store name -> "module:callable(catalogue, spec, argument)", imported on first use."""


def register_store(name: str, factory: str) -> None:
    _STORES[name] = factory


def available_stores() -> list[str]:
    return sorted(_STORES)


def open_store(location: str, catalogue: Catalogue, spec: EmbedderSpec) -> VectorStore:
    """`location` is a store name, optionally with an argument: "faiss", "milvus:PATH"."""
    name, _, argument = location.partition(":")
    if name not in _STORES:
        raise ValueError(
            f"Unknown vector store {location!r}; choose one of: {', '.join(available_stores())}."
        )
    module_name, function_name = _STORES[name].split(":")
    factory = getattr(importlib.import_module(module_name), function_name)
    return factory(catalogue, spec, argument or None)


# --------------------------------------------------------------------------------------------
# The default store: vectors in the catalogue's SQLite file, exact search with FAISS.


class ExactSearch:
    """Exact Euclidean k-nearest-neighbour search over vectors with integer ids (FAISS flat)."""

    def __init__(self, dimension: int) -> None:
        import faiss

        self.dimension = dimension
        self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(dimension))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.remove(ids)
            self._index.add_with_ids(_as_float32(vectors), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        k = min(k, len(self))
        queries = _as_float32(queries)
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        with faiss_threads(1 if len(queries) < PARALLEL_QUERY_COUNT else None):
            squared, ids = self._index.search(queries, k)
        return np.sqrt(np.maximum(squared, 0.0)), ids


class SQLiteFaissStore:
    """Vectors as float32 blobs in the catalogue's SQLite file; an exact FAISS index in memory.

    Writes go into the catalogue's open transaction, so a batch's files and vectors commit
    together. The FAISS index is built on the first search and kept in step with later writes.
    """

    def __init__(self, catalogue: Catalogue) -> None:
        self._connection = catalogue.connection
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS vectors (id INTEGER PRIMARY KEY, vector BLOB NOT NULL)"
        )
        self._search: ExactSearch | None = None

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        rows = [(int(i), _as_float32(vector).tobytes()) for i, vector in zip(ids, vectors)]
        self._connection.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
        if self._search is not None:
            self._search.add(np.asarray(ids, np.int64), vectors)

    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        self._connection.executemany("DELETE FROM vectors WHERE id = ?", [(int(i),) for i in ids])
        if self._search is not None:
            self._search.remove(ids)

    def ids(self) -> np.ndarray:
        rows = self._connection.execute("SELECT id FROM vectors ORDER BY id").fetchall()
        return np.asarray([row[0] for row in rows], dtype=np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        found: dict[int, bytes] = {}
        id_list = [int(i) for i in ids]
        for start in range(0, len(id_list), 500):
            chunk = id_list[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT id, vector FROM vectors WHERE id IN ({marks})"
            found.update(self._connection.execute(query, chunk).fetchall())
        if not id_list:
            return np.zeros((0, 0), np.float32)
        return np.stack([np.frombuffer(found[i], dtype="<f4") for i in id_list]).astype(np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._search is None:
            self._search = self._load_search(queries.shape[1])
        return self._search.search(queries, k)

    def _load_search(self, dimension: int) -> ExactSearch:
        rows = self._connection.execute("SELECT id, vector FROM vectors ORDER BY id").fetchall()
        search = ExactSearch(dimension)
        if rows:
            ids = np.asarray([row[0] for row in rows], dtype=np.int64)
            search.add(ids, np.stack([np.frombuffer(row[1], dtype="<f4") for row in rows]))
        return search

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self._search = None


def open_sqlite_faiss_store(
    catalogue: Catalogue, spec: EmbedderSpec, argument: str | None
) -> SQLiteFaissStore:
    if argument:
        raise ValueError(f"--store faiss takes no argument, got faiss:{argument}.")
    return SQLiteFaissStore(catalogue)


register_store("faiss", "foldervision.retrieval.stores:open_sqlite_faiss_store")
register_store("milvus", "foldervision.retrieval.milvus_store:open_milvus_store")


# --------------------------------------------------------------------------------------------
# Helpers.


def _as_float32(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32)


@contextlib.contextmanager
def faiss_threads(count: int | None) -> Iterator[None]:
    """Run FAISS on `count` threads (None: leave as is), restoring its setting afterwards."""
    import faiss

    previous = faiss.omp_get_max_threads()
    if count is not None:
        faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
