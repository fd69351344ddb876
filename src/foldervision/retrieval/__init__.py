"""Image search over a folder: features (embedder), a persistent index, search and evaluation.

    embedder = mobilenetv2_embedder()
    with ImageIndex.open("images_database", embedder.spec) as index:
        index.update(embedder)
        search = VectorSearch(index.vectors())
    results, skipped = search_files(["query_images/q1.png"], search, embedder, k=4)
"""

from __future__ import annotations

from foldervision.retrieval.embedder import (
    Embedder,
    EmbedderSpec,
    classifier_embedder,
    load_embedder,
    mobilenetv2_embedder,
)
from foldervision.retrieval.index import ImageIndex, IndexUpdate, default_index_path
from foldervision.retrieval.search import Match, QueryResult, VectorSearch, search_files

__all__ = [
    "Embedder",
    "EmbedderSpec",
    "ImageIndex",
    "IndexUpdate",
    "Match",
    "QueryResult",
    "VectorSearch",
    "classifier_embedder",
    "default_index_path",
    "load_embedder",
    "mobilenetv2_embedder",
    "search_files",
]
