"""The retrieval service: one object that opens an index, keeps it current and answers searches.

The command line, the assignment's script and the web page only call this. It stays warm
between calls: the network is built once, the store's search structure is loaded once, and
searches from several threads (a web server) are safe.

    with RetrievalService.open(IndexSettings("images_database")) as service:
        service.update()
        results, skipped = service.search_files(["query_images/q1.png"], k=4)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foldervision.errors import FoldervisionError
from foldervision.images import SkippedFile
from foldervision.retrieval.duplicates import DuplicateGroup
from foldervision.retrieval.embedder import Embedder, load_embedder
from foldervision.retrieval.index import ImageIndex, IndexUpdate, ProgressCallback
from foldervision.retrieval.search import DEFAULT_TOP_K, Match, QueryResult
from foldervision.retrieval.settings import IndexSettings


@dataclass(frozen=True)
class IndexInfo:
    """What a person wants to know about an index before trusting its answers."""

    database: str
    index_path: str
    images: int
    skipped: int
    embedder: str
    updated_at: float | None


class RetrievalService:
    """An open index of one database folder with the embedder that made it."""

    def __init__(self, index: ImageIndex, embedder: Embedder) -> None:
        self.index = index
        self.embedder = embedder
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls, settings: IndexSettings, *, rebuild: bool = False, embedder: Embedder | None = None
    ) -> RetrievalService:
        """Open (or create) the index `settings` describe; `rebuild` forgets its vectors first.

        `embedder` lets a caller that already holds a built embedder reuse it, or embed
        elsewhere (Ray workers); its spec then decides, not the settings' model options.
        """
        embedder = embedder or load_embedder(settings)
        index = ImageIndex.open(settings, embedder.spec, rebuild=rebuild)
        return cls(index, embedder)

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> RetrievalService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def database(self) -> Path:
        return self.index.database_folder

    def update(
        self, progress: ProgressCallback | None = None, embedder: Embedder | None = None
    ) -> IndexUpdate:
        """Embed new or changed files and drop deleted ones; unchanged files are not read.

        `embedder` embeds this update instead (e.g. on Ray workers); it has the same spec.
        """
        with self._lock:
            return self.index.update(embedder or self.embedder, progress=progress)

    def info(self) -> IndexInfo:
        with self._lock:
            return IndexInfo(
                database=str(self.database),
                index_path=str(self.index.index_path),
                images=len(self.index),
                skipped=len(self.index.catalogue.skipped()),
                embedder=self.index.spec.describe(),
                updated_at=self.index.catalogue.updated_at(),
            )

    # ----------------------------------------------------------------------------------------
    # Searching.

    def search_files(
        self, query_paths: Sequence[str | os.PathLike[str]], k: int = DEFAULT_TOP_K
    ) -> tuple[list[QueryResult], list[SkippedFile]]:
        """Embed query files exactly as the database was embedded, then find their neighbours."""
        self._check_searchable(k)
        results: list[QueryResult] = []
        skipped: list[SkippedFile] = []
        for batch in self.embedder.embed_files(list(query_paths)):
            skipped.extend(batch.skipped)
            if batch.paths:
                for path, matches in zip(batch.paths, self.search_vectors(batch.vectors, k)):
                    results.append(QueryResult(str(Path(path)), matches))
        return results, skipped

    def search_bytes(self, data: bytes, name: str, k: int = DEFAULT_TOP_K) -> QueryResult:
        """Search with an image held in memory (a web upload); bad bytes raise ImageLoadError."""
        self._check_searchable(k)
        vector = self.embedder.embed_bytes(data, name)
        return QueryResult(name, self.search_vectors(vector[np.newaxis], k)[0])

    def search_indexed(self, relative_path: str, k: int = DEFAULT_TOP_K) -> QueryResult | None:
        """Search with an image already in the index, by its stored vector (no decoding)."""
        self._check_searchable(k)
        with self._lock:
            vector = self.index.vector_of(relative_path)
        if vector is None:
            return None
        return QueryResult(str(self.database / relative_path), self.search_vectors(vector, k)[0])

    def search_vectors(self, query_vectors: np.ndarray, k: int) -> list[list[Match]]:
        """Ranked matches for each query vector; paths are under the database folder."""
        with self._lock:
            neighbours = self.index.search(query_vectors, k)
        return [
            [
                Match(rank, str(self.database / path), distance)
                for rank, (path, distance) in enumerate(row, start=1)
            ]
            for row in neighbours
        ]

    def find_duplicates(self, threshold: float | None = None) -> list[DuplicateGroup]:
        """Groups of near-identical images (see `retrieval.duplicates`), paths under the folder."""
        from foldervision.retrieval.duplicates import DEFAULT_THRESHOLD, find_duplicates

        threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        with self._lock:
            groups = find_duplicates(self.index, threshold)
        return [
            DuplicateGroup([str(self.database / path) for path in group.files], group.distances)
            for group in groups
        ]

    def _check_searchable(self, k: int) -> None:
        if k < 1:
            raise FoldervisionError(f"k must be at least 1, got {k}.")
        if len(self.index.store) == 0:
            raise FoldervisionError(
                f"{self.database}: the index holds no images yet; add images to the folder "
                "and index it."
            )
