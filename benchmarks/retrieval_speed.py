"""How fast is indexing and searching? Prints the figures.

1. Indexing: the straightforward loop (load -> resize -> `model.predict` per batch of 32, one
   file after another) against `ImageIndex.update` (threaded decoding overlapped with a traced
   `tf.function`, batches of 16), on the same JPEGs, at the same size, with the same weights and
   the same pooling; the two sets of vectors are compared before any ratio is printed.
   Both paths decode with `foldervision.images.load_image`, so the pixels are identical too.
2. Re-indexing the unchanged folder, from opening the index to a finished update.
3. Search latency over synthetic unit vectors (dim 1280) at 10^4 and 10^5 rows.

Run:  python benchmarks/retrieval_speed.py [--folder ../shared/data/flowers5] [--files 1000]
The folder is only read: its files are symlinked into a temporary folder, where the index goes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from foldervision.images import list_image_files, load_image
from foldervision.retrieval.embedder import DEFAULT_IMAGE_SIZE, Embedder, mobilenetv2_embedder
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.stores import ann
from foldervision.retrieval.stores.faiss import PARALLEL_QUERY_COUNT, faiss_threads

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"

STRAIGHTFORWARD_BATCH_SIZE = 32
SEARCH_SIZES = (10_000, 100_000)
SEARCH_DIMENSION = 1280
SEARCH_QUERIES = 50
TOP_K = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(SHARED_FLOWERS))
    parser.add_argument("--files", type=int, default=1000, help="How many JPEGs to index.")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        database = link_sample(Path(arguments.folder), arguments.files, Path(scratch) / "database")
        benchmark_indexing(database, arguments.image_size)
    benchmark_search()


def link_sample(source: Path, count: int, database: Path) -> Path:
    """Spread `count` files evenly over the sorted folder, linked (not copied) into `database`."""
    files = list_image_files(source)
    chosen = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(count, len(files)))]
    database.mkdir(parents=True)
    for number, path in enumerate(chosen):
        (database / f"{number:05d}_{path.name}").symlink_to(path.resolve())
    print(f"files: {len(chosen)} JPEGs from {source}")
    return database


def benchmark_indexing(database: Path, image_size: int) -> None:
    # Average pooling in both paths, so the vectors must agree; the default GeM costs the same.
    embedder = mobilenetv2_embedder(image_size=image_size, pooling="avg")
    embedder.embed_pixels(np.zeros((1, image_size, image_size, 3), np.uint8))  # build + trace
    paths = list_image_files(database)

    straightforward_seconds, straightforward = time_straightforward_loop(paths, image_size)
    index_path = database.parent / "index.sqlite"
    start = time.perf_counter()
    with ImageIndex.open(IndexSettings(database, index_path=index_path), embedder.spec) as index:
        update = index.update(embedder)
        indexed = index.vectors()
    index_seconds = time.perf_counter() - start

    difference = float(np.abs(indexed.vectors - straightforward).max())
    print(f"image size {image_size}, {len(update.embedded)} files embedded")
    print(f"straightforward loop:  {straightforward_seconds:7.2f} s "
          f"({len(paths) / straightforward_seconds:6.1f} images/s)")  # fmt: skip
    print(f"foldervision index:    {index_seconds:7.2f} s "
          f"({len(paths) / index_seconds:6.1f} images/s)")  # fmt: skip
    print(f"speed-up: {straightforward_seconds / index_seconds:.2f}x; "
          f"largest vector difference {difference:.2e}")  # fmt: skip
    time_reindex(database, index_path, image_size)


def time_straightforward_loop(paths: list[Path], image_size: int) -> tuple[float, np.ndarray]:
    """One file at a time, then `model.predict` per batch of 32: what most scripts do."""
    from foldervision.models.mobilenetv2_weights import build_mobilenetv2_backbone

    model = build_mobilenetv2_backbone(image_size)
    model.predict(np.zeros((1, image_size, image_size, 3), np.float32), verbose=0)  # warm-up
    start = time.perf_counter()
    vectors = []
    for first in range(0, len(paths), STRAIGHTFORWARD_BATCH_SIZE):
        batch_paths = paths[first : first + STRAIGHTFORWARD_BATCH_SIZE]
        batch = [load_image(path, image_size) for path in batch_paths]
        features = model.predict(np.stack(batch).astype(np.float32), verbose=0)
        vectors.append(features / np.linalg.norm(features, axis=1, keepdims=True))
    return time.perf_counter() - start, np.concatenate(vectors)


def time_reindex(database: Path, index_path: Path, image_size: int) -> None:
    """What `foldervision index` does on an unchanged folder, model import aside."""
    start = time.perf_counter()
    embedder: Embedder = mobilenetv2_embedder(image_size=image_size, pooling="avg")
    with ImageIndex.open(IndexSettings(database, index_path=index_path), embedder.spec) as index:
        update = index.update(embedder)
    seconds = time.perf_counter() - start
    print(f"re-index unchanged:    {seconds:7.3f} s ({update.unchanged} files checked, "
          f"{len(update.embedded)} embedded)")  # fmt: skip


def benchmark_search() -> None:
    generator = np.random.default_rng(0)
    for size in SEARCH_SIZES:
        vectors = unit_rows(generator.standard_normal((size, SEARCH_DIMENSION), np.float32))
        queries = unit_rows(
            generator.standard_normal((SEARCH_QUERIES, SEARCH_DIMENSION), np.float32)
        )
        start = time.perf_counter()
        index, _, _ = ann.build_index(  # the default store's exact index
            ann.EXACT, SEARCH_DIMENSION, size, lambda count, rows=vectors: rows[:count],
            [(np.arange(size), vectors)],
        )  # fmt: skip
        build_seconds = time.perf_counter() - start
        single = []
        for query in queries:
            start = time.perf_counter()
            exact_search(index, query[np.newaxis])
            single.append(time.perf_counter() - start)
        start = time.perf_counter()
        exact_search(index, queries)
        batch_seconds = time.perf_counter() - start
        median_milliseconds = np.median(single) * 1e3
        print(f"search {size:>7,} x {SEARCH_DIMENSION}: one query {median_milliseconds:6.2f} ms "
              f"(median of {SEARCH_QUERIES}), {SEARCH_QUERIES} queries at once "
              f"{batch_seconds * 1e3 / SEARCH_QUERIES:6.2f} ms each, "
              f"index build {build_seconds * 1e3:6.1f} ms")  # fmt: skip


def exact_search(index: object, queries: np.ndarray) -> np.ndarray:
    """As the default store searches an exact index: one thread for a few queries."""
    with faiss_threads(1 if len(queries) < PARALLEL_QUERY_COUNT else None):
        squared, _ = index.search(queries, TOP_K)  # type: ignore[attr-defined]
    return np.sqrt(np.maximum(squared, 0.0))


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


if __name__ == "__main__":
    main()
