"""The default store: vectors in the index's SQLite file, searched with a FAISS index file.

SQLite (the catalogue's file, in the store's own `vectors` table) is the truth; the FAISS file
beside it (`stores.ann`) is a derived search structure, exact or approximate by size.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from foldervision.retrieval.catalogue import PAGE_BYTES
from foldervision.retrieval.stores import StoreLocation, VectorStore, ann, tuning
from foldervision.retrieval.stores.ann import faiss_threads

if TYPE_CHECKING:
    from foldervision.retrieval.catalogue import Catalogue, IdSummary
    from foldervision.retrieval.spec import EmbedderSpec

T = TypeVar("T")

PARALLEL_QUERY_COUNT = 16
"""Fewer queries than this run on one thread: starting OpenMP threads costs more than it saves."""
VECTOR_DTYPE = np.dtype("<f2")
"""Stored vectors are float16: half the disk of float32 (2.6 GB instead of 5.1 GB at 10^6
1280-d vectors). For unit vectors each component is off by at most 2^-11 of itself, so a
distance moves by at most 2^-11 < 5e-4: printed distances stay within 1e-3 (tested).
Each row is stored in 15 bits a dimension when it can be (`_blobs`), losslessly."""
PACKED_BITS = (0, 1, 2, 3, 4, 5, 7)
"""The bits of the last eighth's high bytes, carried in bit 6 of the other seven eighths'."""
FORMAT_TABLE = "vectors_format"
"""One row naming the stored vectors' type ("float16"). A table of the store's own, not a
setting: `--rebuild` clears the catalogue's settings but not the store's tables, and float16
blobs must never be read, or migrated, as float32. No row: float32 vectors of an older index."""
RERANK_GROUP = 16
"""Queries re-ranked together: their candidates' vectors are read in one pass (84 MB of float32
at 1024 candidates each)."""
HELD_BYTES_MAX = 1 << 30
"""`holding_vectors` holds the stored vectors in memory only up to this many bytes of float16
(about 4 * 10^5 1280-d vectors); a larger collection is re-ranked from SQLite as usual."""
EXACT_SUBSET_MAX = 2048
"""A filtered search of the approximate index that matches at most this many ids computes exact
distances to just their vectors (read from SQLite): exact, and less work than probing lists for
so few (a few MB read against a scan of the lists; benchmarks/search_scale.py --filter-fraction)."""


class SQLiteFaissStore(VectorStore):
    """Vectors as float16 blobs in the catalogue's SQLite file; a FAISS index file beside it.

    Writes go into the catalogue's open transaction, so a batch's files and vectors commit
    together, and each batch bumps a generation counter in the store's settings. The index
    file (`index.faiss` beside `index.sqlite`, see `stores.ann`) is exact or IVF-SQ8 by
    size (`ann`, remembered), kept in step with writes in memory and rewritten atomically by
    `flush()`.
    Opened for searching it is memory-mapped; its trailer must match the catalogue (ids,
    generation, embedder, catalogue identity) or it is rebuilt from SQLite.
    """

    READ_CHUNK = 16_384
    """Vectors read from SQLite at a time when (re)building: bounds memory at 10^6 vectors."""

    def __init__(
        self,
        catalogue: Catalogue,
        spec: EmbedderSpec,
        ann_mode: str | None = None,
        recall: float | None = None,
    ) -> None:
        self._catalogue = catalogue
        self._space = catalogue.store_space("faiss")
        with catalogue.transaction():
            self._space.execute(
                "CREATE TABLE IF NOT EXISTS vectors (id INTEGER PRIMARY KEY, vector BLOB NOT NULL)"
            )
            # A covering index of the ids alone: listing or counting 10^6 ids then reads a
            # few MB instead of walking every 5 KB row.
            self._space.execute("CREATE INDEX IF NOT EXISTS vectors_ids ON vectors (id)")
        catalogue.track_ids("vectors")
        self._adopt_older_layouts()
        self._store_float16()
        if ann_mode is not None or recall is not None:
            with catalogue.transaction():
                if ann_mode is not None:
                    self._space.set_setting("ann", ann_mode)
                if recall is not None:
                    self._space.set_setting("recall", repr(float(recall)))
        catalogue.instance_id()
        self.index_file = catalogue.path.with_suffix(".faiss")
        self._fingerprint = spec.fingerprint()
        self._index: Any = None
        self._info: ann.IndexFileInfo | None = None
        self._generation = -1
        """The catalogue generation the in-memory index reflects (-1: none)."""
        self._writable = False
        self._dirty = False
        self._held: tuple[np.ndarray, np.ndarray] | None = None
        """(sorted ids, their float16 rows) while `holding_vectors` is open."""

    def _adopt_older_layouts(self) -> None:
        """Schema 1 kept vectors in `images` by path; schema 2 kept `--ann` as the catalogue's."""
        if self._space.has_table("images"):
            with self._catalogue.transaction():
                last = ""
                while rows := self._space.execute(
                    "SELECT path, vector FROM images WHERE path > ? ORDER BY path LIMIT ?",
                    (last, self.READ_CHUNK),
                ):
                    last, vectors = rows[-1][0], dict(rows)
                    ids = self._catalogue.ids_of(list(vectors), missing_ok=True)
                    paths = self._catalogue.paths_of(ids)
                    self._space.executemany(
                        "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                        [(int(i), vectors[paths[int(i)]]) for i in ids],
                    )
                self._space.execute("DROP TABLE images")
        legacy_ann = self._catalogue.setting("ann")
        if legacy_ann is not None and self._space.setting("ann") is None:
            with self._catalogue.transaction():
                self._space.set_setting("ann", legacy_ann)

    def _store_float16(self) -> None:
        """Rewrite an older index's float32 vectors as float16, in place, in one transaction:
        interrupted, nothing changed, and the next open starts over. The index file stays
        valid (same ids, same generation). Then VACUUM gives the freed half back to the disk,
        in pages that fit float16 rows (`catalogue.PAGE_BYTES`; if it fails, the file keeps its
        size until the next VACUUM: nothing is lost)."""
        import sqlite3

        with self._catalogue.transaction():
            self._space.execute(f"CREATE TABLE IF NOT EXISTS {FORMAT_TABLE} (format TEXT NOT NULL)")
        if self._space.execute(f"SELECT format FROM {FORMAT_TABLE}"):
            return
        with self._catalogue.transaction():  # the row and the converted vectors commit together
            migrated = self._convert_float32_rows()
            self._space.execute(f"INSERT INTO {FORMAT_TABLE} VALUES ('float16')")
        if migrated:
            with contextlib.suppress(sqlite3.Error):
                self._space.execute(f"PRAGMA page_size = {PAGE_BYTES}")  # applied by VACUUM
                self._space.execute("VACUUM")

    def _convert_float32_rows(self) -> int:
        """Every float32 row as float16 (inside the caller's transaction); how many."""
        last, converted = -(2**62), 0
        while rows := self._space.execute(
            "SELECT id, vector FROM vectors WHERE id > ? ORDER BY id LIMIT ?",
            (last, self.READ_CHUNK),
        ):
            last = rows[-1][0]
            halves = _blobs(np.stack([_as_stored(np.frombuffer(blob, "<f4")) for _, blob in rows]))
            self._space.executemany(
                "UPDATE vectors SET vector = ? WHERE id = ?",
                [(half, row[0]) for half, row in zip(halves, rows)],
            )
            converted += len(rows)
        return converted

    # ----------------------------------------------------------------------------------------
    # Writing: SQLite first (the truth), then the in-memory index if it is current.

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        self._held = None  # a held copy would be stale: read SQLite from now on
        index = self._index_to_change()
        stored = _as_stored(vectors)
        id_list = [int(i) for i in ids]
        kept = {row[0] for row in self._space.select_in(
            "SELECT id FROM vectors WHERE id IN ({marks})", id_list
        )}  # fmt: skip
        with self._space.inserting_in_bulk("vectors") as added:
            self._space.executemany(
                "INSERT INTO vectors VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET vector = "
                "excluded.vector",
                zip(id_list, _blobs(stored)),
            )
            added(np.asarray([i for i in dict.fromkeys(id_list) if i not in kept], np.int64))
        generation = self._bump_generation()
        if index is not None and index.d != np.shape(vectors)[1]:
            self._drop_index()  # built empty or for other vectors: flush() rebuilds
        elif index is not None:
            ids = np.asarray(ids, dtype=np.int64)
            ann.remove_ids(index, ids)
            index.add_with_ids(_as_float32(stored), ids)  # as a rebuild would read them
            self._generation, self._dirty = generation, True

    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        if not len(ids):
            return
        self._held = None
        index = self._index_to_change()
        self._space.executemany("DELETE FROM vectors WHERE id = ?", [(int(i),) for i in ids])
        generation = self._bump_generation()
        if index is not None:
            ann.remove_ids(index, np.asarray(ids, dtype=np.int64))
            self._generation, self._dirty = generation, True

    def flush(self) -> None:
        """Make the index file match the catalogue: write pending changes, or rebuild it."""
        stamp = self.stamp()
        mode = self.ann_mode()
        if self._index is not None and self._generation == stamp.generation:
            if self._fits(self._info, stamp.count, mode):
                if self._dirty:
                    self._info = dataclasses.replace(self._info, stamp=stamp)
                    ann.write_index_file(self.index_file, self._index, self._info)
                    self._dirty = False
                return
        else:
            info = ann.read_index_info(self.index_file)
            if info is not None and info.stamp == stamp and self._fits(info, stamp.count, mode):
                self._load(info, writable=False)  # checked now: the next search needs no check
                if self._index is not None:
                    return
        self._rebuild(stamp, mode)

    def _index_to_change(self) -> Any:
        """The in-memory index, loaded writable, if it reflects the catalogue; else None.

        With no current index nothing is kept in step: `flush()` rebuilds from SQLite once.
        """
        generation = self.generation()
        if self._index is None or self._generation != generation:
            self._drop_index()
            info = ann.read_index_info(self.index_file)
            if info is None or info.stamp != self.stamp():
                return None
            self._load(info, writable=True)
        elif not self._writable:
            self._load(self._info, writable=True)
        return self._index

    # ----------------------------------------------------------------------------------------
    # Reading.

    def ids(self) -> np.ndarray:
        rows = self._space.execute("SELECT id FROM vectors ORDER BY id")
        return np.asarray([row[0] for row in rows], dtype=np.int64)

    def id_summary(self) -> IdSummary:
        """Count, sum and hashed sums of the ids, kept by triggers: no ids are read."""
        summary = self._catalogue.id_summary("vectors")
        assert summary is not None  # tracked since __init__
        return summary

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        held = self._held_rows(ids)
        if held is not None:
            return held
        id_list = [int(i) for i in ids]
        query = "SELECT id, vector FROM vectors WHERE id IN ({marks})"
        found: dict[int, bytes] = dict(self._space.select_in(query, id_list))
        if not id_list:
            return np.zeros((0, 0), np.float32)
        return decode_blobs([found[i] for i in id_list])

    @contextlib.contextmanager
    def holding_vectors(self) -> Iterator[None]:
        """Every stored vector held in memory (float16, as stored) while open, when they fit in
        `HELD_BYTES_MAX`: `vectors` and the approximate index's re-ranking then read no rows.

        For asking every image for its neighbours (`duplicates`): each query re-ranks the
        candidates tuning chose (up to 1024) from their stored rows, so each row was read from
        SQLite as many times as it was a candidate (proposing at 10^5 images took 0.78 of the
        time held, docs/benchmarks.md, Near-duplicates).
        Writes drop the held copy.
        """
        if self._held is not None or len(self) * self._dimension() * 2 > HELD_BYTES_MAX:
            yield
            return
        chunks = [(ids, _as_stored(vectors)) for ids, vectors in self._all_vectors()]
        if chunks:  # float16 -> float32 -> float16 is exact
            self._held = (
                np.concatenate([ids for ids, _ in chunks]),
                np.concatenate([rows for _, rows in chunks]),
            )
        del chunks
        try:
            yield
        finally:
            self._held = None

    def _held_rows(self, ids: np.ndarray) -> np.ndarray | None:
        """The held float32 vectors of `ids` when every one is held; else None (read SQLite)."""
        if self._held is None or not len(ids):
            return None
        held_ids, rows = self._held
        ids = np.asarray(ids, np.int64)
        positions = np.minimum(np.searchsorted(held_ids, ids), len(held_ids) - 1)
        if not np.array_equal(held_ids[positions], ids):
            return None
        return _as_float32_exactly(rows[positions])

    def search(
        self, queries: np.ndarray, k: int, ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        queries = _as_float32(np.atleast_2d(queries))
        index = self._searchable_index()
        if ids is not None:
            return self._search_among(index, queries, k, np.unique(np.asarray(ids, np.int64)))
        k = min(k, int(index.ntotal))
        if k == 0:
            return _no_matches(len(queries))
        candidates = k if self.index_kind() == ann.EXACT else self._candidates(index, k)
        with faiss_threads(1 if len(queries) < PARALLEL_QUERY_COUNT else None):
            squared, ids = index.search(queries, candidates)
        if self.index_kind() == ann.EXACT:
            return _euclidean(squared, ids)
        return self._rerank(queries, ids, k)

    def _search_among(
        self, index: Any, queries: np.ndarray, k: int, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top k among `ids` only, found inside the search (`VectorStore.search`).

        The exact index scans only those ids (a FAISS id selector). The approximate one
        computes exact distances to the vectors themselves when few match (EXACT_SUBSET_MAX),
        else probes more lists and re-ranks more candidates the fewer match
        (`ann.filtered_probe_count`, `ann.filtered_candidate_count`) with the selector.
        """
        ids = ids[ids >= 0]
        k = min(k, len(ids), int(index.ntotal))
        if k == 0:
            return _no_matches(len(queries))
        approximate = self.index_kind() == ann.APPROXIMATE
        if approximate and len(ids) <= EXACT_SUBSET_MAX:
            return self._exact_among(queries, k, ids)
        selector, bitmap = ann.id_selector(ids)
        fraction = len(ids) / int(index.ntotal)
        probes = ann.filtered_probe_count(self._info.lists, fraction, self._info.probes)
        parameters = ann.search_parameters(self.index_kind(), selector, probes)
        candidates = k
        if approximate:
            candidates = ann.filtered_candidate_count(self._candidates(index, k), fraction)
            candidates = min(len(ids), candidates)
        with faiss_threads(1 if len(queries) < PARALLEL_QUERY_COUNT else None):
            squared, found = index.search(queries, candidates, params=parameters)
        del bitmap  # FAISS only pointed at it: kept alive until the search was done
        if not approximate:
            return _euclidean(squared, found)
        return self._rerank(queries, found, k)

    def _candidates(self, index: Any, k: int) -> int:
        """Candidates the approximate index returns for exact re-ranking: as many as tuning
        chose for its k (`stores.tuning`), more for a larger k."""
        assert self._info is not None
        wanted = max(self._info.candidates, 2 * k + 8)
        return min(int(index.ntotal), wanted)

    def _exact_among(
        self, queries: np.ndarray, k: int, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances to the stored (float16) vectors of `ids` (those that have one)."""
        import faiss

        query = "SELECT id, vector FROM vectors WHERE id IN ({marks}) ORDER BY id"
        rows = self._space.select_in(query, [int(i) for i in ids])
        if not rows:
            return _no_matches(len(queries))
        present = np.asarray([row[0] for row in rows], dtype=np.int64)
        stored = decode_blobs([row[1] for row in rows])
        squared, found = faiss.knn(queries, stored, min(k, len(present)))
        return _euclidean(squared, np.where(found >= 0, present[np.maximum(found, 0)], -1))

    def _rerank(
        self, queries: np.ndarray, candidate_ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances from the stored float16 vectors for the approximate candidates.

        `RERANK_GROUP` queries at a time, one query's differences at a time: 100 queries with
        1024 candidates each took three 0.5 GB arrays at once (1.9 GB search RSS at 10^6).
        """
        if not (candidate_ids >= 0).any():
            return _no_matches(len(queries))
        distances = np.full(candidate_ids.shape, np.inf, np.float32)
        for start in range(0, len(queries), RERANK_GROUP):
            group = candidate_ids[start : start + RERANK_GROUP]
            unique_ids = np.unique(group[group >= 0])
            if not len(unique_ids):
                continue
            stored = self.vectors(unique_ids)
            rows = np.searchsorted(unique_ids, np.maximum(group, 0))
            rows = np.minimum(rows, len(unique_ids) - 1)
            for offset, query in enumerate(queries[start : start + RERANK_GROUP]):
                differences = stored[rows[offset]] - query
                distances[start + offset] = np.sqrt((differences * differences).sum(axis=1))
        distances[candidate_ids < 0] = np.inf
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]
        return (
            np.take_along_axis(distances, order, axis=1).astype(np.float32),
            np.take_along_axis(np.where(candidate_ids < 0, -1, candidate_ids), order, axis=1),
        )

    def _searchable_index(self) -> Any:
        """The current index: in memory, else the file memory-mapped, else rebuilt."""
        if self._index is not None and self._generation == self.generation():
            return self._index
        self._drop_index()
        stamp = self.stamp()
        info = ann.read_index_info(self.index_file)
        if info is None or info.stamp != stamp or not self._fits(info, stamp.count):
            self._rebuild(stamp, self.ann_mode())
            return self._index
        self._load(info, writable=False)
        if self._index is None:  # the trailer was fine but FAISS could not read the file
            self._rebuild(stamp, self.ann_mode())
        return self._index

    def index_kind(self) -> str | None:
        """The loaded index: "exact" or "approximate"; None before one is loaded."""
        return self._info.kind if self._info is not None else None

    def index_description(self) -> dict[str, Any]:
        """The loaded index file's kind, lists, probes, what tuning measured, one line for
        people (`summary`)."""
        if self._info is None:
            return super().index_description()
        info = self._info
        return {
            "kind": info.kind,
            "lists": info.lists if info.kind == ann.APPROXIMATE else 0,
            "probes": info.probes if info.kind == ann.APPROXIMATE else 0,
            "quantizer": info.quantizer,
            "candidates": info.candidates,
            "recall": info.recall,
            "target": info.target,
            "summary": info.describe(),
        }

    def __len__(self) -> int:
        return self.id_summary().count

    def close(self) -> None:
        """Save pending in-memory changes that match the catalogue (never rebuild here).

        If saving fails the old file stays, its stamp no longer matches, and the next search
        rebuilds it: nothing is lost, so closing does not raise.
        """
        try:
            if self._dirty and self._generation == self.generation():
                self.flush()
        except OSError:
            pass
        finally:
            self._drop_index()

    # ----------------------------------------------------------------------------------------
    # The stamp, the mode, building and loading.

    def generation(self) -> int:
        return int(self._space.setting("generation") or 0)

    def _bump_generation(self) -> int:
        generation = self.generation() + 1
        self._space.set_setting("generation", str(generation))
        return generation

    def stamp(self) -> ann.Stamp:
        return ann.catalogue_stamp(
            self._catalogue, self._catalogue.instance_id(), self._fingerprint
        )

    def ann_mode(self) -> str:
        return self._space.setting("ann") or ann.DEFAULT_ANN_MODE

    def recall_target(self) -> float:
        """`index --recall`, remembered; default `tuning.TARGET_RECALL`."""
        value = self._space.setting("recall")
        return float(value) if value else tuning.TARGET_RECALL

    def _fits(self, info: ann.IndexFileInfo | None, count: int, mode: str | None = None) -> bool:
        """Is this index right for `count` vectors under the mode and the recall target?

        An approximate index (or the exact one tuning fell back to) is tuned again when the
        collection has grown RETRAIN_GROWTH times, or the target changed; one written before
        tuning existed (no measured recall) is tuned on its next rebuild.
        """
        if info is None:
            return False
        if info.asked != ann.wanted_kind(mode or self.ann_mode(), count, info.asked):
            return False
        if info.asked == ann.EXACT:
            return True
        if info.recall is None or info.target != self.recall_target():
            return False
        return count <= ann.RETRAIN_GROWTH * max(info.trained_count, 1)

    def _rebuild(self, stamp: ann.Stamp, mode: str) -> None:
        self._drop_index()
        kind = ann.wanted_kind(mode, stamp.count)
        if stamp.count == 0:  # nothing to index, and no dimension to build one with
            self.index_file.unlink(missing_ok=True)
            self._index = ann.build_index(ann.EXACT, 1, 0, lambda size: np.zeros((0, 1)), [])[0]
            self._info = ann.IndexFileInfo(stamp, kind, 0, 0, trained_count=0)
            self._generation = stamp.generation
            return
        dimension = self._dimension()
        ids = self.ids()

        def training_sample(size: int) -> np.ndarray:
            chosen = ids if len(ids) <= size else np.random.default_rng(0).choice(ids, size)
            return self.vectors(np.sort(np.unique(chosen)))

        if kind == ann.APPROXIMATE:
            tuned = ann.build_tuned_index(
                stamp,
                dimension,
                ids,
                training_sample,
                self.vectors,
                self._all_vectors,
                self.recall_target(),
                forced=mode == ann.APPROXIMATE,
            )
            index, info = tuned.index, tuned.info
        if kind == ann.EXACT or index is None:
            index, lists, probes = ann.build_index(
                ann.EXACT, dimension, len(ids), training_sample, self._all_vectors()
            )
            if kind == ann.EXACT:
                info = ann.IndexFileInfo(stamp, kind, lists, probes, trained_count=len(ids))
        ann.write_index_file(self.index_file, index, info)
        self._index, self._info, self._generation = index, info, stamp.generation
        self._writable, self._dirty = True, False

    def _all_vectors(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored (ids, float32 vectors) chunk in id order, each read and decoded by a
        background thread while the caller works on the one before (`_read_ahead`)."""
        yield from _read_ahead(self._vector_chunks())

    def _vector_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last = -(2**62)
        while True:
            rows = self._space.execute(
                "SELECT id, vector FROM vectors WHERE id > ? ORDER BY id LIMIT ?",
                (last, self.READ_CHUNK),
            )
            if not rows:
                return
            last = rows[-1][0]
            ids = np.asarray([row[0] for row in rows], dtype=np.int64)
            yield ids, decode_blobs([row[1] for row in rows])

    def _dimension(self) -> int:
        rows = self._space.execute("SELECT length(vector) FROM vectors LIMIT 1")
        return _blob_dimension(rows[0][0]) if rows else 1

    def _load(self, info: ann.IndexFileInfo, writable: bool) -> None:
        index = ann.read_index_file(self.index_file, writable)
        if index is None:
            self._drop_index()
            return
        if info.kind == ann.APPROXIMATE:
            index.nprobe = info.probes
        self._index, self._info, self._generation = index, info, info.stamp.generation
        self._writable, self._dirty = writable, False

    def _drop_index(self) -> None:
        self._index, self._info, self._generation = None, None, -1
        self._writable = self._dirty = False


def open_faiss_store(
    location: StoreLocation, catalogue: Catalogue, spec: EmbedderSpec
) -> SQLiteFaissStore:
    """`--store faiss` (no argument), with `--ann` remembered when given."""
    if location.argument:
        raise ValueError(f"--store faiss takes no argument, got {location}.")
    return SQLiteFaissStore(catalogue, spec, ann_mode=location.ann, recall=location.recall)


# --------------------------------------------------------------------------------------------
# Helpers.


_END = object()


def _read_ahead(chunks: Iterator[T]) -> Iterator[T]:
    """`chunks`, the next one produced by one background thread while the caller uses this one.

    A rebuild read and decoded SQLite rows on one core while FAISS waited (7 s of a 46 s build
    of the hard mixture's 10^6 1280-d vectors); reading ahead overlaps the two (that build took
    about 0.92 of the time, docs/benchmarks.md). One chunk in flight at a time, so the generator
    never runs in two threads at once and memory grows by one chunk. SQLite is used from that
    thread while the caller may use the same connection: SQLite serialises calls on it
    (`sqlite3.threadsafety` 3). An error in the reader is raised here, in order.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="foldervision-read") as pool:
        pending = pool.submit(next, chunks, _END)
        while (chunk := pending.result()) is not _END:
            pending = pool.submit(next, chunks, _END)
            yield chunk


def _as_stored(vectors: np.ndarray) -> np.ndarray:
    """Rows as float16, converted by FAISS: 3 times NumPy's speed (8 s of writing 10^6 1280-d
    rows on the reference machine). Both round to the nearest float16; on an exact tie FAISS
    rounds away from zero where NumPy rounds to even, the same error (about 1 value in 20,000
    differs in its last bit)."""
    import faiss

    vectors = np.asarray(vectors)
    if vectors.dtype == VECTOR_DTYPE or vectors.ndim != 2 or not vectors.size:
        return np.ascontiguousarray(vectors, dtype=VECTOR_DTYPE)
    converter = faiss.ScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_fp16)
    codes = converter.compute_codes(np.ascontiguousarray(vectors, dtype=np.float32))
    return codes.view(VECTOR_DTYPE)


def _blobs(half: np.ndarray) -> list[bytes]:
    """Each float16 row as a blob: 15 bits a dimension when it loses nothing, else 16.

    A unit vector's components are below 2 in magnitude, so bit 14 of each float16 (the top
    exponent bit) is 0: dropping it stores 1280 dimensions in 2,401 bytes instead of 2,560, and
    27 rows fill a 64 KB SQLite page instead of 25 (2.43 instead of 2.62 GB at 10^6; issue 21).
    Layout: the d low bytes; then the high bytes of the first 7/8 of the dimensions, each
    carrying in bit 6 one bit of a high byte of the last eighth (`PACKED_BITS`); a last byte 1,
    which makes the length odd (15d/8 + 1, d a multiple of 16). A plain float16 row (2d bytes,
    even) is kept for a row with a component of 2 or more (or not finite), or a dimension that
    is not a multiple of 16; the length tells the two apart (`decode_blobs`), so rows written
    before packing are read as they are.
    """
    half = np.ascontiguousarray(half, dtype=VECTOR_DTYPE)
    count, dimension = half.shape
    if dimension % 16:
        return [row.tobytes() for row in half]
    bits = half.view("<u2")
    packable = ~(bits & 0x4000).any(axis=1)
    eighth = dimension // 8
    length = dimension + 7 * eighth + 1
    packed = np.empty((count, length), np.uint8)
    packed[:, :dimension] = bits  # the low bytes (a cast to uint8 keeps them)
    high = (bits >> 8).astype(np.uint8)
    carriers = packed[:, dimension:-1].reshape(count, 7, eighth)
    carriers[:] = high[:, : 7 * eighth].reshape(count, 7, eighth)
    last = high[:, None, 7 * eighth :]
    carriers |= ((last & _CARRIED_MASKS) != 0).view(np.uint8) << 6
    packed[:, -1] = 1
    data = packed.tobytes()
    rows = [data[start : start + length] for start in range(0, len(data), length)]
    for row in np.flatnonzero(~packable).tolist():
        rows[row] = half[row].tobytes()
    return rows


_CARRIED_MASKS = np.array([1 << bit for bit in PACKED_BITS], np.uint8)[:, None]
"""`PACKED_BITS` as masks, one row per carrier eighth (broadcast over (rows, 7, d/8))."""


def decode_blobs(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored vector blobs (packed or plain float16, `_blobs`) as float32 rows, in order."""
    if not blobs:
        return np.zeros((0, 0), np.float32)
    length = len(blobs[0])
    if all(len(blob) == length for blob in blobs):  # one kind: no regrouping, no copy back
        raw = np.frombuffer(b"".join(blobs), np.uint8).reshape(len(blobs), length)
        return _as_float32_exactly(_unpacked(raw) if length % 2 else raw.view(VECTOR_DTYPE))
    by_length: dict[int, list[int]] = {}
    for row, blob in enumerate(blobs):
        by_length.setdefault(len(blob), []).append(row)
    result = np.empty((len(blobs), _blob_dimension(length)), np.float32)
    for rows in by_length.values():
        result[rows] = decode_blobs([blobs[row] for row in rows])
    return result


def _as_float32_exactly(half: np.ndarray) -> np.ndarray:
    """float16 rows as float32 (exact: every float16 is a float32), by FAISS's converter:
    2.6 times NumPy's speed on the reference machine (1280-d rows, two threads)."""
    import faiss

    half = np.ascontiguousarray(half, dtype=VECTOR_DTYPE)
    if not half.size:
        return half.astype(np.float32)
    converter = faiss.ScalarQuantizer(half.shape[1], faiss.ScalarQuantizer.QT_fp16)
    return converter.decode(half.view(np.uint8))


def _blob_dimension(length: int) -> int:
    """The dimension of a stored blob of `length` bytes (odd: packed, even: plain float16)."""
    return (length - 1) * 8 // 15 if length % 2 else length // VECTOR_DTYPE.itemsize


def _unpacked(rows: np.ndarray) -> np.ndarray:
    """Packed blobs (uint8 rows of one length) back to their float16 rows (`_blobs`)."""
    count, length = rows.shape
    dimension = _blob_dimension(length)
    eighth = dimension // 8
    carriers = rows[:, dimension:-1].reshape(count, 7, eighth)
    high = np.empty((count, dimension), np.uint16)
    high[:, : 7 * eighth] = (carriers & 0xBF).reshape(count, 7 * eighth)
    flags = (carriers >> 6) & 1
    high[:, 7 * eighth :] = (flags * _CARRIED_MASKS).sum(axis=1, dtype=np.uint8)
    high <<= 8
    high |= rows[:, :dimension]
    return high.view(VECTOR_DTYPE)


def _as_float32(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _euclidean(squared: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's squared L2 as distances; a column FAISS could not fill (id -1) at inf."""
    distances = np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)
    distances[ids < 0] = np.inf
    return distances, ids


def _no_matches(queries: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((queries, 0), np.float32), np.zeros((queries, 0), np.int64)
