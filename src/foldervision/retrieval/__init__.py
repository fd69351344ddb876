"""Image search over a folder: embedders and backends, a catalogue plus vector store, a service.

    from foldervision.retrieval import RetrievalService

    with RetrievalService.open(IndexSettings("images_database")) as service:
        service.update()
        results, skipped = service.search_files(["query_images/q1.png"], k=4)

Rooms: `settings` (what an index is made of, decided once); `embedder` (what a vector means)
and `backends` (what runs the network); `catalogue` (the files, SQLite) and `stores` (the
vectors: `stores.faiss` with its index file `stores.ann`, exact or approximate by size, and
`stores.milvus`); `index` joins them; `service` is what callers use, `watch` keeps it current
while a folder changes; `evaluate`, `duplicates` and `sheet` read results.
"""

from __future__ import annotations

from foldervision.retrieval.embedder import Embedder, EmbedderSpec, load_embedder
from foldervision.retrieval.index import ImageIndex, IndexUpdate, default_index_path
from foldervision.retrieval.search import Match, QueryResult
from foldervision.retrieval.service import IndexInfo, RetrievalService
from foldervision.retrieval.settings import IndexSettings

__all__ = [
    "Embedder",
    "EmbedderSpec",
    "ImageIndex",
    "IndexInfo",
    "IndexSettings",
    "IndexUpdate",
    "Match",
    "QueryResult",
    "RetrievalService",
    "default_index_path",
    "load_embedder",
]
