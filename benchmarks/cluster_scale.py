"""Beyond one machine: stores and engines give the same answers; what they cost. Prints figures.

1. Same answers: real photos (a seeded sample of flowers5) embedded once with MobileNetV2 into
   the default store; the same vectors are written to Milvus Lite under the same ids; every
   image queries both stores (exact index on both sides) and the top-4 lists are compared.
2. Store write time at --write-rows vectors: precomputed unit vectors (dim 1280) written in
   batches of 16 through catalogue transactions, exactly as `ImageIndex.update` writes them,
   so embedding time is left out; Milvus Lite includes its final flush. Ratio vs faiss.
3. Search latency (one query, k=4, exact) at 10^4 and 10^5 vectors, both stores.
4. Ray: indexing --ray-files photos single-process vs on a local Ray (all cores, one 1-CPU
   actor per core), same folder, --rounds alternated rounds, one Ray run per --task-sizes value;
   the vectors are compared, then the per-worker throughput projects 10^7 images on N workers.
   Ray's own floor is timed too: the same paths through Ray Data and an actor pool that returns
   its input (no decoding, no network).

Run:  python benchmarks/cluster_scale.py [--folder ../shared/data/flowers5] [--files 300]
      [--ray-files 1000] [--write-rows 10000] [--image-size 224] [--skip-ray | --ray-only]
      [--rounds 2] [--task-sizes 64]
The folder is only read: files are symlinked into a temporary folder, where the indexes go.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from foldervision.images import list_image_files
from foldervision.retrieval.catalogue import Catalogue, FileState
from foldervision.retrieval.embedder import DEFAULT_IMAGE_SIZE, Embedder, load_embedder
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.ray_embedding import WORKER_BATCH_SIZE
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.stores import StoreLocation, open_store

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
DIMENSION = 1280
WRITE_BATCH = 16
SEARCH_SIZES = (10_000, 100_000)
SEARCH_QUERIES = 30
TOP_K = 4
PROJECTED_IMAGES = 10**7
OBJECT_STORE_BYTES = 500 * 2**20
"""A small object store: the machine is shared (the vectors in flight are a few MB)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(SHARED_FLOWERS))
    parser.add_argument("--files", type=int, default=300, help="Photos for the equality check.")
    parser.add_argument("--ray-files", type=int, default=1000, help="Photos for the Ray run.")
    parser.add_argument("--write-rows", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--ray-only", action="store_true", help="Only part 4.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternated rounds of part 4.")
    parser.add_argument(
        "--task-sizes", default=str(WORKER_BATCH_SIZE), help="Paths per Ray task, e.g. 16,64."
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        source = Path(arguments.folder)
        if not arguments.ray_only:
            database = link_sample(source, arguments.files, arguments.seed, scratch_path / "same")
            same_answers(database, arguments.image_size, scratch_path)
            write_time(arguments.write_rows, scratch_path)
            search_latency(scratch_path)
        if not arguments.skip_ray:
            database = link_sample(
                source, arguments.ray_files, arguments.seed, scratch_path / "ray"
            )
            sizes = [int(size) for size in arguments.task_sizes.split(",")]
            ray_overhead(database, arguments.image_size, scratch_path, arguments.rounds, sizes)


def link_sample(source: Path, count: int, seed: int, database: Path) -> Path:
    """A seeded random sample of the folder, linked (not copied), class folders kept."""
    files = list_image_files(source)
    chosen = np.random.default_rng(seed).choice(len(files), min(count, len(files)), replace=False)
    for index in sorted(chosen.tolist()):
        path = files[index]
        target = database / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path.resolve())
    print(f"sample: {len(chosen)} photos of {source} (seed {seed})")
    return database


def same_answers(database: Path, image_size: int, scratch: Path) -> None:
    settings = IndexSettings(database, index_path=scratch / "faiss.sqlite", image_size=image_size)
    embedder = load_embedder(settings)
    with ImageIndex.open(settings, embedder.spec) as index:
        start = time.perf_counter()
        index.update(embedder)
        print(f"embedded {len(index)} photos in {time.perf_counter() - start:.1f} s")
        indexed = index.vectors()
        expected = index.search(indexed.vectors, TOP_K)
    milvus = StoreLocation("milvus", str(scratch / "same.db"))  # same vectors, same ids
    catalogue = Catalogue.open(scratch / "faiss.sqlite")
    store = open_store(milvus, catalogue, embedder.spec)
    with catalogue.transaction():
        store.upsert(indexed.ids, indexed.vectors)
    distances, ids = store.search(indexed.vectors, TOP_K)
    store.close()
    paths = catalogue.paths_of(ids.ravel())
    catalogue.close()
    agree = sum(
        [path for path, _ in want] == [paths[int(i)] for i in row]
        for want, row in zip(expected, ids)
    )
    gap = max(
        abs(d - want_d)
        for want, row in zip(expected, distances)
        for (_, want_d), d in zip(want, row)
    )
    print(
        f"same top-{TOP_K}: {agree}/{len(expected)} queries ({agree / len(expected):.2%}); "
        f"largest distance difference {gap:.2e}"
    )


def unit_vectors(count: int, seed: int = 1) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def filled_store(location: StoreLocation, rows: int, scratch: Path, name: str):
    """A catalogue with `rows` files and a store holding their vectors, written like an index."""
    from foldervision.retrieval.embedder import EmbedderSpec

    spec = EmbedderSpec("synthetic", "none", 1, "rgb", layer=name)
    catalogue = Catalogue.open(scratch / f"{name}.sqlite")
    catalogue.bind_to(spec)
    store = open_store(location, catalogue, spec)
    vectors = unit_vectors(rows)
    start = time.perf_counter()
    for begin in range(0, rows, WRITE_BATCH):
        files = [
            (f"{i:07d}.jpg", FileState(1, 1)) for i in range(begin, min(rows, begin + WRITE_BATCH))
        ]
        with catalogue.transaction():
            store.upsert(catalogue.record_files(files), vectors[begin : begin + len(files)])
    store.flush()
    return catalogue, store, time.perf_counter() - start


def write_time(rows: int, scratch: Path) -> None:
    seconds = {}
    milvus = StoreLocation("milvus", str(scratch / "write.db"))
    for name, location in (("faiss", StoreLocation()), ("milvus", milvus)):
        catalogue, store, seconds[name] = filled_store(location, rows, scratch, f"write_{name}")
        store.close()
        catalogue.close()
        print(f"write {rows} vectors, batches of {WRITE_BATCH}: {name} {seconds[name]:.2f} s")
    print(f"milvus lite / faiss write time: {seconds['milvus'] / seconds['faiss']:.2f}x")


def search_latency(scratch: Path) -> None:
    queries = unit_vectors(SEARCH_QUERIES, seed=7)
    for rows in SEARCH_SIZES:
        milvus = StoreLocation("milvus", str(scratch / f"s{rows}.db"))
        for name, location in (("faiss", StoreLocation()), ("milvus", milvus)):
            catalogue, store, _ = filled_store(location, rows, scratch, f"search_{name}_{rows}")
            store.search(queries[:1], TOP_K)  # warm: loads the FAISS index / Milvus segments
            start = time.perf_counter()
            for query in queries:
                store.search(query[np.newaxis], TOP_K)
            milliseconds = (time.perf_counter() - start) / len(queries) * 1000
            print(f"search {rows} vectors, 1 query, k={TOP_K}: {name} {milliseconds:.1f} ms")
            store.close()
            catalogue.close()


class CpuMeter:
    """CPU seconds (user + system) spent by this process, and with `descendants` by every
    process below it (Ray's GCS, raylet and actors), over a `with` block: a figure the other
    jobs on a shared machine disturb far less than wall time. Linux /proc only.

    Ray's raylet does not collect its exited workers' times, so the processes are sampled
    every POLL_SECONDS while the block runs; an actor's last fraction of a sample is lost.
    """

    POLL_SECONDS = 0.2

    def __init__(self, descendants: bool) -> None:
        self.descendants = descendants
        self.seconds = 0.0
        self.actor_seconds = 0.0  # of the Ray Data actors alone (EmbedOnWorker)
        self._actors: dict[int, bool] = {}
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._done = threading.Event()

    def _sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        parents: dict[int, int] = {}
        times: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        chosen = {os.getpid()}
        while self.descendants:
            more = {pid for pid, parent in parents.items() if parent in chosen} - chosen
            if not more:
                break
            chosen |= more
        for pid in chosen & times.keys():
            if not self._actors.get(pid):  # an idle worker becomes an actor later
                try:
                    self._actors[pid] = (
                        b"EmbedOnWorker" in Path(f"/proc/{pid}/cmdline").read_bytes()
                    )
                except OSError:
                    self._actors[pid] = False
            self._first.setdefault(pid, times[pid] if not self._started else 0.0)
            self._last[pid] = times[pid]

    def _poll(self) -> None:
        while not self._done.wait(self.POLL_SECONDS):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._started = False
        self._sample()
        self._started = True
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._sample()
        used = {pid: self._last[pid] - self._first[pid] for pid in self._last}
        self.seconds = sum(used.values())
        self.actor_seconds = sum(used[pid] for pid in used if self._actors.get(pid))


def ray_overhead(
    database: Path, image_size: int, scratch: Path, rounds: int, task_sizes: list[int]
) -> None:
    """Single process vs local Ray (one 1-CPU actor per core), alternated round by round.

    Wall time on a shared machine favours whichever side runs more threads (it gets a larger
    share of the cores), so the CPU seconds each side spends are reported too.
    Both sides find the ONNX model already exported (as any run after a spec's first does);
    each run loads its embedder afresh, like a new `foldervision index` process. Ray's start-up
    (`ray.init`) is paid once per command, so it is reported apart and then added back.
    """
    import ray

    from foldervision.retrieval.ray_embedding import RayEmbedder, connect_ray

    settings = IndexSettings(database, image_size=image_size)
    warm = load_embedder(settings)
    warm.embed_pixels(np.zeros((1, image_size, image_size, 3), np.uint8))  # export, if needed
    factory = functools.partial(load_embedder, settings)
    runs = ["single", *(f"ray/{size}" for size in task_sizes), "ray no-op"]
    seconds: dict[str, list[float]] = {run: [] for run in runs}
    cpu: dict[str, list[float]] = {run: [] for run in runs}
    actor_cpu: list[float] = []
    started: list[float] = []
    vectors: dict[str, np.ndarray] = {}
    cpus = os.cpu_count() or 1
    for round_number in range(rounds):
        order = runs if round_number % 2 == 0 else runs[::-1]
        for run in order:
            if run == "single":
                embedder: Embedder = load_embedder(settings)
            elif run == "ray no-op":
                seconds[run].append(no_op_pipeline(database, cpus, task_sizes[0]))
                print(f"round {round_number + 1}: {run} {seconds[run][-1]:.1f} s", flush=True)
                continue
            else:  # a fresh local Ray per run, as each `foldervision index --ray` starts one
                begin = time.perf_counter()
                ray.init(
                    num_cpus=cpus, object_store_memory=OBJECT_STORE_BYTES,
                    include_dashboard=False, log_to_driver=False,
                )  # fmt: skip
                connect_ray()  # what --ray adds on top (Ray Data settings)
                started.append(time.perf_counter() - begin)
                size = int(run.split("/")[1])
                embedder = RayEmbedder(factory, warm.spec, workers=cpus, worker_batch_size=size)
            catalogue = scratch / f"{run.replace('/', '-')}-{round_number}.sqlite"
            run_settings = replace(settings, index_path=catalogue)
            with ImageIndex.open(run_settings, warm.spec) as index:
                with CpuMeter(descendants=run != "single") as meter:
                    begin = time.perf_counter()
                    index.update(embedder)
                    seconds[run].append(time.perf_counter() - begin)
                cpu[run].append(meter.seconds)
                vectors[run] = index.vectors().vectors
            if run != "single":
                ray.shutdown()
                actor_cpu.append(meter.actor_seconds)
            print(
                f"round {round_number + 1}: {run:>8} {seconds[run][-1]:.1f} s wall, "
                f"{cpu[run][-1]:.1f} CPU s"
                + (f" (actors {meter.actor_seconds:.1f}; ray.init {started[-1]:.1f} s)"
                   if run != "single" else ""),
                flush=True,
            )  # fmt: skip
    count = len(vectors["single"])
    single = statistics.median(seconds["single"])
    start_up = statistics.median(started)
    print(f"ray: {cpus} actors (1 CPU, 1 ONNX Runtime thread each); ray.init {start_up:.1f} s")
    print(f"index {count} photos at {image_size} px, median of {rounds} alternated rounds:")
    single_cpu = statistics.median(cpu["single"])
    print(
        f"  single process: {single:.1f} s ({count / single:.1f} images/s), {single_cpu:.1f} CPU s"
    )
    floor = statistics.median(seconds["ray no-op"])
    print(
        f"  Ray Data alone (the same rows, actor pool and task size, actors that return their "
        f"input): {floor:.1f} s after ray.init, which is Ray's floor ({floor / single:.2f}x of "
        "the single process)"
    )
    for run in runs[1:-1]:
        distributed = statistics.median(seconds[run])
        gap = float(np.abs(vectors[run] - vectors["single"]).max())
        print(
            f"  local Ray, tasks of {run.split('/')[1]} paths: {distributed:.1f} s "
            f"({distributed / single:.2f}x), with ray.init {distributed + start_up:.1f} s "
            f"({(distributed + start_up) / single:.2f}x); "
            f"{statistics.median(cpu[run]):.1f} CPU s "
            f"({statistics.median(cpu[run]) / single_cpu:.2f}x); "
            f"largest vector difference {gap:.1e}"
        )
    best = min(runs[1:-1], key=lambda run: statistics.median(seconds[run]))
    wall_rate = count / statistics.median(seconds[best]) / cpus
    per_worker = count / statistics.median(actor_cpu)
    print(
        f"per-worker throughput: {wall_rate:.1f} images/s by wall time ({best}, this shared "
        f"machine, start-up included); {per_worker:.1f} images per actor CPU second (what one "
        "dedicated core does; used below)"
    )
    for workers in (8, 64, 512):
        hours = PROJECTED_IMAGES / (per_worker * workers) / 3600
        print(f"projection: {PROJECTED_IMAGES:.0e} images on {workers} such workers: {hours:.1f} h")


class ReturnInput:
    """A Ray Data actor that does nothing: what the pipeline costs without any embedding."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return batch


def no_op_pipeline(database: Path, cpus: int, task_size: int) -> float:
    """Seconds for Ray Data to carry the folder's paths through a do-nothing actor pool."""
    import ray

    from foldervision.retrieval.ray_embedding import connect_ray

    ray.init(
        num_cpus=cpus, object_store_memory=OBJECT_STORE_BYTES,
        include_dashboard=False, log_to_driver=False,
    )  # fmt: skip
    connect_ray()
    paths = [{"path": str(path)} for path in list_image_files(database)]
    begin = time.perf_counter()
    with warnings.catch_warnings():  # the same remote arguments as RayEmbedder's
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        carried = ray.data.from_items(paths).map_batches(
            ReturnInput,
            batch_size=task_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=cpus),
            num_cpus=1,
            max_restarts=0,
        )
    rows = sum(len(batch["path"]) for batch in carried.iter_batches(batch_format="numpy"))
    seconds = time.perf_counter() - begin
    ray.shutdown()
    assert rows == len(paths)
    return seconds


if __name__ == "__main__":
    main()
