"""The default store's index file: exact below a size, approximate (IVF-SQ8) above.

SQLite stays the source of truth; this file is a derived, disposable search structure. It is
written atomically (temp file + os.replace) with a trailer that records exactly which
catalogue state it was built from (a `Stamp`). A file whose trailer does not match the
catalogue (stale after a crash, copied from another index, another embedder, damaged) is
rebuilt, never used.

Why IVF with compact codes (benchmarks/search_scale.py has the figures):
- it removes vectors by id in place (HNSW cannot), so updates stay incremental;
- the stored float16 vectors in SQLite are the only full copy: the index file holds 4-bit
  product-quantizer codes (`PQ_BYTES_PER_DIMENSION`: 64 bytes a 1280-d vector, a 72 MB file at
  10^6 instead of 1.2 GB for 8-bit scalar codes) scanned with FAISS's fast-scan kernels, whole
  when the data's neighbours are spread over many lists (a few ms at 10^6);
- the candidates it returns are re-ranked with the stored float16 vectors, so reported
  distances are exact, and tuning (`stores.tuning`) re-ranks as many as the target needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from foldervision.atomic import atomic_path
from foldervision.retrieval.stores import ANN_MODES

if TYPE_CHECKING:
    from foldervision.retrieval.catalogue import Catalogue
    from foldervision.retrieval.spec import EmbedderSpec
    from foldervision.retrieval.stores.tuning import Candidate

DEFAULT_ANN_MODE = "auto"

APPROXIMATE_FROM = 50_000
"""`--ann auto` switches to the approximate index from this many vectors (and back below half).

Exact flat search costs about 0.35 ms per 1000 vectors per query on one core of the reference
machine (17 ms at 5 * 10^4); IVF-SQ8 stays under 10 ms up to 10^6 (benchmarks/search_scale.py).
"""

MAX_LISTS = 512
"""Inverted lists at most (reached from about 3 * 10^5 vectors). Chosen on 10^6 vectors derived
from the digits collection, checked on ones derived from flowers5 (benchmarks/search_scale.py,
docs/benchmarks.md): against 1024 lists the build took 0.70-0.82 of the time (k-means and each
vector's assignment halve), at the same or better held-out recall@4 (0.996 / 0.993 and 0.9975 /
0.9968) and the same query time: tuning probes as many more lists as it needs."""
PROBES = 16
"""Lists searched per query. On flowers5-like vectors (benchmarks/search_scale.py): recall@4
0.997 at 10^6 vectors / 1024 lists, 0.97 at 2 * 10^4 / 128 lists; 8 probes gave 0.99 / 0.91."""
TRAINING_POINTS_PER_LIST = 64
KMEANS_ITERATIONS = 10
"""Iterations of the lists' k-means (FAISS's default is 25): on 65,536 training vectors for
1024 lists (measured when those were the most), the objective after 10 is within 0.6% of
that after 25 for both kinds of `benchmarks/search_scale.py` data (flowers5-derived 1.0053,
hard mixture 1.0004), and 10 take about 11 s instead of 32 at 10^6 derived vectors (py-spy
samples of one build each); tuning then measures the recall the lists give."""
RETRAIN_GROWTH = 4
"""Retrain the lists once the collection has grown this many times over its training size."""

EXACT = "exact"
APPROXIMATE = "approximate"

_MAGIC = b"FVANN001"
_TRAILER = struct.Struct("<Q8s")


@dataclass(frozen=True)
class Stamp:
    """Which catalogue state a file was built from; any difference means "rebuild"."""

    catalogue: str
    generation: int
    count: int
    ids_summary: str
    """SHA-1 of the vector ids' `IdSummary` (count, sum, hashed sums; kept by triggers)."""
    fingerprint: str
    """The embedder's (`EmbedderSpec.fingerprint`)."""


@dataclass(frozen=True)
class IndexFileInfo:
    """What the trailer of an index file says about it."""

    stamp: Stamp
    kind: str
    lists: int
    probes: int
    trained_count: int
    quantizer: str = "SQ8"
    """How the approximate index codes vectors: "SQ8" (1 byte a dimension), "fp16" (older
    files), or "PQ<M>x4fs" (M 4-bit product-quantizer codes, scanned with fast-scan)."""
    candidates: int = 16
    """Candidates re-ranked exactly from the stored vectors per query."""
    recall: float | None = None
    """Recall@4 the chosen setting reached on the collection's own vectors (`stores.tuning`);
    None for an exact index, or one written before tuning."""
    target: float | None = None
    """The recall it was tuned for (`index --recall`)."""
    wanted: str | None = None
    """The kind `--ann` asked for, when it differs from `kind`: "approximate" when no
    approximate setting reached the target and the exact index is used instead."""
    within_budget: bool = True
    """False for the fallback: no setting within the latency budget reached the target, so
    every code is scanned (`FALLBACK`) and re-ranked, instead of a float32 copy."""
    not_built: str | None = None
    """The listed candidate when a sample screened it out (`misses_on_sample`), with the best
    recall it reached there."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stamp": asdict(self.stamp)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexFileInfo:
        return cls(**{**data, "stamp": Stamp(**data["stamp"])})

    @property
    def asked(self) -> str:
        """The kind `--ann` asked for (what `wanted_kind` compares with)."""
        return self.wanted or self.kind

    def describe(self) -> str:
        """One line for people: the kind, and for a tuned index what it measured."""
        if self.kind == EXACT:
            if self.wanted == APPROXIMATE:
                return (
                    f"exact: no approximate setting reached recall@4 {self.target:.2f} within "
                    f"the latency budget (best {self.recall:.3f})"
                )
            return "exact"
        measured = "" if self.recall is None else f", recall@4 {self.recall:.3f} measured"
        target = "" if self.target is None else f" (target {self.target:.2f})"
        scanned = (
            f"every {self.quantizer} code scanned"
            if self.lists <= 1
            else f"IVF-{self.quantizer}, {self.probes} of {self.lists} lists probed"
        )
        fallback = (
            ""
            if self.within_budget
            else ": no setting within the latency budget reached the target"
        )
        skipped = "" if self.not_built is None else f"; not built: {self.not_built}"
        return (
            f"approximate {scanned}, {self.candidates} candidates re-ranked{measured}{target}"
            f"{fallback}{skipped}"
        )


def summary_checksum(summary: Iterable[int]) -> str:
    return hashlib.sha1(json.dumps([int(value) for value in summary]).encode()).hexdigest()


def wanted_kind(mode: str, count: int, current_kind: str | None = None) -> str:
    """Which index a collection of `count` vectors gets; `auto` has hysteresis at the threshold."""
    if mode not in ANN_MODES:
        raise ValueError(f"Unknown --ann mode {mode!r}; choose one of: {', '.join(ANN_MODES)}.")
    if mode != "auto":
        return mode
    if current_kind == APPROXIMATE and count >= APPROXIMATE_FROM // 2:
        return APPROXIMATE
    return APPROXIMATE if count >= APPROXIMATE_FROM else EXACT


def list_count(count: int) -> int:
    """About sqrt(N) lists, a power of two, at most MAX_LISTS (1 for a handful of vectors)."""
    if count < 2:
        return 1
    return int(min(MAX_LISTS, 2 ** round(math.log2(math.sqrt(count)))))


def probe_count(lists: int) -> int:
    """The untuned rule (`build_index`); a tuned index keeps its own (`IndexFileInfo.probes`)."""
    return min(lists, PROBES)


def filtered_probe_count(lists: int, fraction: float, probes: int) -> int:
    """Lists to probe when only `fraction` of the vectors match a filter, for an index that
    reaches its recall at `probes`: about as many matching vectors are then scanned as an
    unfiltered search scans vectors, so the filtered answer keeps the recall (tested). Every
    list at 1/32nd or less (512 lists): skipping a non-matching entry costs one bit test."""
    return min(lists, math.ceil(probes / max(fraction, 1e-9)))


FILTERED_CANDIDATES_MAX = 1024
"""Most candidates a filtered search re-ranks (about 10-20 ms of SQLite reads): at 2560 a 5%
filter of the hard mixture at 10^5 took 50 ms a query for recall 0.999."""


def filtered_candidate_count(candidates: int, fraction: float) -> int:
    """Candidates to re-rank when only `fraction` of the vectors match a filter, for an index
    that reaches its recall re-ranking `candidates`: the matching top k are then farther, where
    coarse codes order worse (4-bit codes scanned whole: 0.76 at 20% re-ranking the unfiltered
    32, 0.94 at 128, tested), so as many more as the filter is narrower, up to a cap."""
    wanted = math.ceil(candidates / max(fraction, 1e-9))
    return max(candidates, min(wanted, FILTERED_CANDIDATES_MAX))


def id_selector(ids: np.ndarray) -> tuple[Any, np.ndarray]:
    """A FAISS selector of these (non-negative) ids, and the bitmap it points at.

    One bit per id up to the largest (125 KB at 10^6): each scanned vector costs one bit test.
    FAISS keeps only a pointer, so the caller holds the bitmap until the search returns.
    """
    import faiss

    members = np.zeros(int(ids.max()) + 1, dtype=bool)
    members[ids] = True
    bitmap = np.packbits(members, bitorder="little")
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap


def search_parameters(kind: str, selector: Any, probes: int) -> Any:
    """FAISS search parameters that scan only the selector's ids (and probe `probes` lists)."""
    import faiss

    if kind == EXACT:
        return faiss.SearchParameters(sel=selector)
    return faiss.SearchParametersIVF(sel=selector, nprobe=probes)


def build_index(
    kind: str,
    dimension: int,
    count: int,
    training_sample: Callable[[int], np.ndarray],
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
) -> tuple[Any, int, int]:
    """A FAISS index of `kind` over (ids, vectors) chunks: (index, lists, probes).

    Vectors arrive in chunks so that 10^6 of them never sit in memory as float32 at once;
    `training_sample(n)` returns about n vectors for k-means.
    """
    import faiss

    if kind == EXACT:
        index = faiss.IndexIDMap2(faiss.IndexFlatL2(dimension))
        lists = probes = 0
    else:
        lists = list_count(count)
        probes = probe_count(lists)
        index = ivf_index(dimension, lists, "SQ8", training_sample)
        index.nprobe = probes
    add_chunks(index, chunks)
    return index, lists, probes


QUANTIZERS = {"SQ8": "QT_8bit", "fp16": "QT_fp16"}
"""Scalar codes an IVF index may keep ("fp16" only in files written before PQ codes). No
"flat": the stored vectors are float16 themselves, so float32 codes would hold nothing more."""
PQ_BYTES_PER_DIMENSION = (1 / 40, 1 / 20, 1 / 10)
"""Product-quantizer codes tried, smallest first: 4 bits per 20, 10 and 5 dimensions (32, 64
and 128 bytes a 1280-d vector). The coarsest is searched through lists (enough on flowers5-like
vectors); the finer ones are scanned whole, which reaches 0.95 on the hard mixture once a few
hundred candidates are re-ranked (benchmarks/search_scale.py)."""
PQ_FROM = 1000
"""Fewest vectors to train 4-bit product quantizers on (16 centroids per sub-vector, FAISS
wants 39 points per centroid); below, tuning tries scalar codes only."""
SCREEN_FROM = 200_000
"""From this many vectors, the listed candidate is first tried on a sample (`misses_on_sample`):
building it costs k-means and every vector's assignment to one of 512 lists at 10^6, wasted on
data whose neighbours its lists cannot hold (the hard mixture: its build took 0.68-0.81 of the
time without the screen in three same-session pairs, docs/benchmarks.md)."""
SCREEN_SAMPLE = 50_000
"""Vectors in that sample: 2-7 s more for a build at 10^6 1280-d vectors that keeps the listed
candidate (in a slow period: reading them 1.4 s, their exact neighbours 1.1, training 3.3,
adding 1.0, one search 0.4)."""
FALLBACK = "SQ8"
"""Codes scanned whole, re-ranked, when nothing within the latency budget reaches the target:
1 byte a dimension memory-mapped (1.2 GB at 10^6 1280-d vectors, under the 2 GB a search
process may take) instead of a float32 flat index (4.9 GB)."""


def pq_quantizer(dimension: int, bytes_per_dimension: float) -> str | None:
    """The name "PQ<M>x4fs": M (even, dividing `dimension`) 4-bit sub-quantizers, about
    `bytes_per_dimension` bytes a dimension; None when no such M exists."""
    wanted = max(2, round(2 * dimension * bytes_per_dimension))
    divisors = [m for m in range(2, dimension + 1, 2) if dimension % m == 0]
    if not divisors:
        return None
    return f"PQ{min(divisors, key=lambda m: (abs(m - wanted), m))}x4fs"


def code_bytes(quantizer: str, dimension: int) -> float:
    """Bytes of one vector's code."""
    if quantizer.startswith("PQ"):
        return int(quantizer[2:].split("x")[0]) / 2
    return dimension * (2 if quantizer == "fp16" else 1)


def ivf_index(
    dimension: int,
    lists: int,
    quantizer: str,
    training_sample: Callable[[int], np.ndarray],
    coarse: Any = None,
) -> Any:
    """An empty trained IVF index with scalar-quantized codes. `coarse`, the list quantizer, is
    trained here unless it already is (k-means is the costly part: candidates share it)."""
    import faiss

    if coarse is None:
        coarse = faiss.IndexFlatL2(dimension)
    if quantizer.startswith("PQ"):
        subquantizers = int(quantizer[2:].split("x")[0])
        index = faiss.IndexIVFPQFastScan(coarse, dimension, lists, subquantizers, 4)
        points = max(lists * TRAINING_POINTS_PER_LIST, 16 * 256)  # 256 points per centroid
    else:
        kind = getattr(faiss.ScalarQuantizer, QUANTIZERS[quantizer])
        index = faiss.IndexIVFScalarQuantizer(coarse, dimension, lists, kind, faiss.METRIC_L2)
        points = lists * TRAINING_POINTS_PER_LIST
    sample = np.ascontiguousarray(training_sample(points), dtype=np.float32)
    if lists > 1 and coarse.ntotal != lists:  # the lists' k-means: large products, threaded
        clustering = faiss.Clustering(dimension, lists)
        clustering.seed = 1234
        clustering.niter = KMEANS_ITERATIONS
        clustering.train(sample, coarse)
    with faiss_threads(1):  # hundreds of tiny k-means: threads only wait on each other (a
        index.train(sample)  # 256-list 4-bit PQ: 3 s on one thread, 117 s on 2 busy cores)
    if quantizer.startswith("PQ"):  # the same codes, computed faster: encoding 10^5 vectors
        index.pq.sync_transposed_centroids()  # into 256 4-bit codes took 1.0 s, not 1.8 s
    return index


def remove_ids(index: Any, ids: np.ndarray) -> None:
    """Remove these ids from the index, leaving a fast-scan index sound for later additions.

    FAISS 1.15 shrinks a fast-scan list without clearing the removed codes' 4-bit halves at the
    end of its last block, and the next addition ORs new codes into them: an upserted vector
    was then not found even as its own neighbour (tested). So the freed slots are zeroed.
    """
    import faiss

    ids = np.ascontiguousarray(ids, np.int64)
    if not isinstance(index, faiss.IndexIVFFastScan):
        index.remove_ids(ids)
        return
    lists = faiss.downcast_InvertedLists(index.invlists)
    before = [lists.list_size(number) for number in range(index.nlist)]
    index.remove_ids(ids)
    packer, zero = index.get_CodePacker(), np.zeros(index.code_size, np.uint8)
    per_block, block_bytes = lists.n_per_block, lists.block_size
    for number, size_before in enumerate(before):
        size = lists.list_size(number)
        end = min(-(-size // per_block) * per_block, size_before)
        if size == size_before or end == size:
            continue
        blocks = faiss.rev_swig_ptr(lists.get_codes(number), -(-end // per_block) * block_bytes)
        for offset in range(size, end):
            packer.pack_1(zero, offset, blocks.reshape(-1, block_bytes))


def add_chunks(index: Any, chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
    for ids, vectors in chunks:
        index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, np.int64)
        )


@dataclass(frozen=True)
class Tuned:
    """What `build_tuned_index` chose: an approximate index, or None for "use exact"."""

    index: Any
    info: IndexFileInfo


def build_tuned_index(
    stamp: Stamp,
    dimension: int,
    ids: np.ndarray,
    training_sample: Callable[[int], np.ndarray],
    vectors_of: Callable[[np.ndarray], np.ndarray],
    all_chunks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    target: float,
    forced: bool,
) -> Tuned:
    """The approximate index with the smallest codes that reaches `target` recall on the
    collection's own vectors within the latency budget (`stores.tuning`); when none does, every
    8-bit code scanned and re-ranked (`FALLBACK`), or, should even that miss the target,
    `Tuned(None, ...)`: the caller builds the exact index. `forced` (`--ann approximate`) lifts
    the budget, and keeps the best approximate index even below the target.

    Candidates, smallest codes first (`PQ_BYTES_PER_DIMENSION`): the coarsest 4-bit codes in
    about sqrt(N) lists, built in the pass over the stored vectors that computes the exact
    neighbours; only if that misses the target, the finer ones scanned whole (one list; one
    pass for both), then 8-bit codes in lists, then the fallback (a pass each: 1.2 GB each at
    10^6). Each pass adds 10^6 vectors to its indexes: building only what is needed keeps an
    index that the first candidate serves (flowers5-like vectors) as quick to build as before.
    From `SCREEN_FROM` vectors the listed candidate is first tried on a sample; when it misses
    there (`misses_on_sample`), it is not built, and the pass that computes the exact
    neighbours builds the finer codes instead (`IndexFileInfo.not_built` says so).
    """
    from foldervision.retrieval.stores import tuning

    count = len(ids)
    lists = list_count(count)
    query_ids = tuning.sample_ids(ids)
    queries = vectors_of(query_ids)
    first: list[tuning.Candidate] = []
    if count >= PQ_FROM:
        for number, share in enumerate(PQ_BYTES_PER_DIMENSION):
            quantizer = pq_quantizer(dimension, share)
            if quantizer is not None:
                candidate_lists = lists if number == 0 else 1
                first.append(
                    tuning.Candidate(quantizer, candidate_lists, code_bytes(quantizer, dimension))
                )
    scalar = [tuning.Candidate("SQ8", lists, code_bytes("SQ8", dimension))]
    fallback = [tuning.Candidate(FALLBACK, 1, code_bytes(FALLBACK, dimension), False)]
    truth: list[np.ndarray] = []
    coarse: dict[int, Any] = {}
    """Trained list quantizers by number of lists, shared by the candidates."""

    def build(candidates: list[tuning.Candidate], with_truth: bool) -> Callable[[], list[Any]]:
        def make() -> list[Any]:
            import faiss

            indexes = []
            for candidate in candidates:
                shared = coarse.setdefault(candidate.lists, faiss.IndexFlatL2(dimension))
                indexes.append(
                    ivf_index(
                        dimension, candidate.lists, candidate.quantizer, training_sample, shared
                    )  # fmt: skip
                )
            chunks = _feeding(all_chunks(), indexes)
            if with_truth:
                truth.append(tuning.exact_neighbours(query_ids, queries, chunks))
            else:
                for _ in chunks:
                    pass
            return indexes

        return make

    listed, not_built = [first[:1], first[1:]], None
    if first and count >= SCREEN_FROM:
        sampled = misses_on_sample(first[0], dimension, ids, vectors_of, target)
        if sampled is not None:  # one pass for the finer codes, with the exact neighbours
            not_built = f"IVF-{first[0].quantizer}, recall@4 {sampled:.3f} at best on a sample"
            listed = [first[1:]]
    groups = [group for group in (*listed, scalar, fallback) if group]
    stages = [(group, build(group, with_truth=number == 0)) for number, group in enumerate(groups)]
    fraction = math.inf if forced else tuning.MAX_SCANNED_FRACTION
    index, chosen, candidate = tuning.choose(
        stages, count, dimension, queries, query_ids, lambda: truth[0], target, fraction
    )
    info = IndexFileInfo(
        stamp,
        APPROXIMATE,
        chosen.lists,
        chosen.probes,
        trained_count=count,
        quantizer=chosen.quantizer,
        candidates=chosen.candidates,
        recall=round(chosen.recall, 4),
        target=target,
        within_budget=candidate.within_budget or forced,
        not_built=not_built,
    )
    if not chosen.reaches(target) and not forced:
        return Tuned(None, dataclasses.replace(info, kind=EXACT, wanted=APPROXIMATE))
    return Tuned(index, info)


def misses_on_sample(
    candidate: Candidate,
    dimension: int,
    ids: np.ndarray,
    vectors_of: Callable[[np.ndarray], np.ndarray],
    target: float,
) -> float | None:
    """The best recall@k `candidate` reaches on a random `SCREEN_SAMPLE` of the vectors, when
    that misses `target` by more than `tuning.CONFIDENCE_Z` standard errors; else None.

    "Best" is its most thorough setting: every list probed, the most candidates re-ranked. A
    guess, not a bound: on a sample each true neighbour has fewer vectors competing for the
    same re-ranked places (easier), but near-copies that are each other's neighbours in the
    whole may be missing from it (harder). A candidate that passes is built and measured on the
    whole as before; one screened out wrongly costs a larger index and slower queries (the
    finer codes scanned whole), never a missed target.
    """
    from foldervision.retrieval.stores import tuning

    sample = tuning.sample_ids(ids, SCREEN_SAMPLE, seed=tuning.SEED + 1)
    vectors = np.ascontiguousarray(vectors_of(sample), np.float32)
    query_ids = tuning.sample_ids(sample)
    queries = vectors[np.searchsorted(sample, query_ids)]
    truth = tuning.exact_neighbours(query_ids, queries, [(sample, vectors)])
    lists = min(candidate.lists, list_count(len(sample)))
    random = np.random.default_rng(tuning.SEED)

    def training_sample(size: int) -> np.ndarray:
        return vectors[np.sort(random.permutation(len(vectors))[:size])]

    index = ivf_index(dimension, lists, candidate.quantizer, training_sample)
    add_chunks(index, [(sample, vectors)])
    recall, error = tuning.most_thorough(index, lists, queries, query_ids, truth)
    return recall if recall + tuning.CONFIDENCE_Z * error < target else None


def _feeding(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], indexes: list[Any]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The chunks, each added to every index on its way through."""
    for ids, vectors in chunks:
        add_chunks_of = [(ids, vectors)]
        for index in indexes:
            add_chunks(index, add_chunks_of)
        yield ids, vectors


def write_index_file(path: Path, index: Any, info: IndexFileInfo) -> None:
    """FAISS's own format, then a JSON trailer; both land at once via os.replace."""
    import faiss

    with atomic_path(path) as temporary:
        faiss.write_index(index, str(temporary))
        trailer = json.dumps(info.to_dict(), sort_keys=True).encode("utf-8")
        with open(temporary, "ab") as handle:
            handle.write(trailer)
            handle.write(_TRAILER.pack(len(trailer), _MAGIC))


def catalogue_stamp(catalogue: Catalogue, instance: str, fingerprint: str) -> Stamp:
    """The stamp an index file built from the catalogue as it is now carries."""
    summary = catalogue.id_summary("vectors")
    generation = catalogue.store_space("faiss").setting("generation")
    return Stamp(
        catalogue=instance,
        generation=int(generation or 0),
        count=summary.count if summary else 0,
        ids_summary=summary_checksum(summary or (0, 0, 0, 0)),
        fingerprint=fingerprint,
    )


def index_file_state(catalogue: Catalogue, spec: EmbedderSpec) -> dict[str, Any] | None:
    """The index file beside a catalogue, read without changing anything (`foldervision info`):
    its kind, lists and probes, and whether it matches the catalogue (if not, the next search
    rebuilds it). None when there is no index file."""
    info = read_index_info(catalogue.path.with_suffix(".faiss"))
    if info is None:
        return None
    current = catalogue_stamp(catalogue, catalogue.setting("instance") or "", spec.fingerprint())
    tuned = {"quantizer": info.quantizer, "candidates": info.candidates}
    return {
        "kind": info.kind,
        "lists": info.lists,
        "probes": info.probes,
        **(tuned if info.kind == APPROXIMATE else {}),
        "recall": info.recall,
        "target": info.target,
        "summary": info.describe(),
        "current": info.stamp == current,
    }


def read_index_info(path: Path) -> IndexFileInfo | None:
    """The trailer of an index file, or None when there is no file or it is not one of ours."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            if size < _TRAILER.size:
                return None
            handle.seek(size - _TRAILER.size)
            length, magic = _TRAILER.unpack(handle.read(_TRAILER.size))
            if magic != _MAGIC or length > size - _TRAILER.size:
                return None
            handle.seek(size - _TRAILER.size - length)
            return IndexFileInfo.from_dict(json.loads(handle.read(length)))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def read_index_file(path: Path, writable: bool) -> Any | None:
    """Load the FAISS index: memory-mapped for searching, into memory when it will change.

    A memory-mapped FAISS index is read-only (changing it crashes), hence `writable`.
    """
    import faiss

    try:
        return faiss.read_index(str(path), 0 if writable else faiss.IO_FLAG_MMAP)
    except RuntimeError:
        return None


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
