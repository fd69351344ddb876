"""The counted costs of `stores.tuning`, measured: what one re-ranked candidate and one byte of
4-bit fast-scan codes cost, in 8-bit 1280-d vector scans. Prints the ratios beside the values
tuning uses (`RERANK_COST`, `FAST_SCAN_COST`), all measured in this one process, single queries
on one thread, so the ratios hold on whatever machine runs it.

    python benchmarks/ann_costs.py [--vectors 100000] [--json]

- 8-bit scan: every code of a one-list IVF-SQ8 index (the fallback's scan), per vector;
- fast-scan: every code of one-list IVF-PQ<M>x4fs indexes (M = 64, 128, 256), per byte;
- re-ranking: random rows read from a real catalogue's `vectors` table by the store's own
  `vectors()` (float16 blobs, 64 KB pages), then the same rows from a copy in 8 KB pages.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

DIMENSION = 1280
QUERIES = 50
CANDIDATES = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="Last line: one JSON object.")
    arguments = parser.parse_args()
    import faiss

    from foldervision.retrieval.stores import ann, tuning

    faiss.omp_set_num_threads(1)
    random = np.random.default_rng(0)
    vectors = random.standard_normal((arguments.vectors, DIMENSION), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:QUERIES] + 0.01
    report: dict[str, float] = {}
    sq8 = ann.ivf_index(DIMENSION, 1, "SQ8", lambda n: vectors[:n])
    sq8.add(vectors)
    sq8_us = per_query_ms(sq8, queries, 64) * 1000 / arguments.vectors
    report["sq8_us_per_vector"] = round(sq8_us, 4)
    for subquantizers in (64, 128, 256):
        quantizer = f"PQ{subquantizers}x4fs"
        index = ann.ivf_index(DIMENSION, 1, quantizer, lambda n: vectors[:n])
        index.add(vectors)
        us_per_byte = per_query_ms(index, queries, 64) * 1000 / arguments.vectors
        us_per_byte /= ann.code_bytes(quantizer, DIMENSION)
        report[f"{quantizer}_byte_vs_sq8_byte"] = round(us_per_byte / (sq8_us / DIMENSION), 3)
    with tempfile.TemporaryDirectory() as scratch:
        for page_bytes in (65536, 8192):
            lookup_us = rerank_us(Path(scratch), vectors, page_bytes)
            report[f"rerank_us_{page_bytes // 1024}k_pages"] = round(lookup_us, 2)
            report[f"rerank_vs_sq8_vector_{page_bytes // 1024}k_pages"] = round(
                lookup_us / sq8_us, 1
            )
    report["tuning_RERANK_COST"] = tuning.RERANK_COST
    report["tuning_FAST_SCAN_COST"] = tuning.FAST_SCAN_COST
    for key, value in report.items():
        print(f"{key:32s} {value}")
    if arguments.json:
        print(json.dumps(report))


def per_query_ms(index, queries: np.ndarray, k: int) -> float:
    index.search(queries[:1], k)
    start = time.perf_counter()
    for query in queries:
        index.search(query[np.newaxis], k)
    return (time.perf_counter() - start) * 1000 / len(queries)


def rerank_us(folder: Path, vectors: np.ndarray, page_bytes: int) -> float:
    """Microseconds a candidate to read CANDIDATES random rows through the store's `vectors()`."""
    from foldervision.retrieval import catalogue as catalogue_module
    from foldervision.retrieval.catalogue import Catalogue, FileState
    from foldervision.retrieval.embedder import mobilenetv2_embedder
    from foldervision.retrieval.stores.faiss import SQLiteFaissStore

    path = folder / f"pages{page_bytes}" / "index.sqlite"
    previous, catalogue_module.PAGE_BYTES = catalogue_module.PAGE_BYTES, page_bytes
    try:
        catalogue = Catalogue.open(path)
    finally:
        catalogue_module.PAGE_BYTES = previous
    spec = mobilenetv2_embedder().spec  # resolves the weights hash; builds no network
    catalogue.bind_to(spec)
    store = SQLiteFaissStore(catalogue, spec)
    for offset in range(0, len(vectors), 16_384):
        chunk = vectors[offset : offset + 16_384]
        rows = [(f"{offset + row:07d}.jpg", FileState(1, 0)) for row in range(len(chunk))]
        with catalogue.transaction():
            store.upsert(catalogue.record_files(rows), chunk)
    assert sqlite3.connect(path).execute("PRAGMA page_size").fetchone() == (page_bytes,)
    random = np.random.default_rng(1)
    ids = store.ids()
    store.vectors(random.choice(ids, CANDIDATES, replace=False))
    start = time.perf_counter()
    for _ in range(QUERIES):
        store.vectors(np.sort(random.choice(ids, CANDIDATES, replace=False)))
    seconds = time.perf_counter() - start
    store.close()
    catalogue.close()
    return seconds * 1e6 / (QUERIES * CANDIDATES)


if __name__ == "__main__":
    main()
