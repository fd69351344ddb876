"""How fast is embedding, how fast does one search start, and what do ONNX and INT8 cost in quality?

1. Speed, whole processes, alternated round by round on the same folder:
   - the straightforward loop: Pillow open -> RGB -> resize 224 -> Keras MobileNetV2
     `model.predict` in batches of 64, average pooling (`--straightforward`, a child process);
   - `foldervision index DB --rebuild` (ONNX Runtime, decoding overlapped; its ONNX file is
     exported by one warm-up run first, as any user's first run does).
   Each prints wall time, images/s, peak RSS and cores used ((user + sys CPU) / wall), and the
   ratio of the two.
2. Start-up: a whole `foldervision search Q --database DB` against `python -c "import tensorflow"`.
3. Quality (`--quality N`): N photos of a labelled folder (seeded sample) embedded with Keras,
   ONNX fp32, ONNX INT8 and ONNX fp32 with JPEG draft mode (which the loader no longer uses);
   max abs difference of the unit vectors, how often the leave-one-out top 4 is the same, and
   P@4 / mAP for each.
4. The network alone (`--model-only SECONDS`): the fp32 ONNX file, images/s for one run on
   every core at several batch sizes against single-threaded runs side by side (what
   `foldervision index` does), each setting in its own process.

Run:  python benchmarks/embedding_speed.py [--files 1000] [--rounds 2]
          [--variants fp32,int8,keras,one-scale,lite0,lite2,mobilenetv2+lite0,all-three
          (one-scale: --scales 1; lite: --model efficientnet-lite0/-lite2; the last two:
          backbones side by side, --model mobilenetv2+efficientnet-lite0[+efficientnet-lite2])]
          [--ort-threads 1,2] [--quality 1000] [--memory 10000] [--model-only 6]
The folder is only read: its files are symlinked into a temporary folder, where the index goes.
Timings on a shared machine are noisy: read the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
STRAIGHTFORWARD_BATCH_SIZE = 64
IMAGE_SIZE = 224
TOP_K = 4
SEED = 42


@dataclass
class Timing:
    wall: float
    cpu: float
    peak_rss_mb: float

    def line(self, name: str, images: int | None) -> str:
        speed = f"{images / self.wall:7.1f} images/s  " if images else ""
        return (
            f"{name:34s} {self.wall:7.2f} s  {speed}peak RSS {self.peak_rss_mb:6.0f} MB  "
            f"cores used {self.cpu / self.wall:4.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(SHARED_FLOWERS))
    parser.add_argument("--files", type=int, default=1000, help="JPEGs to index (0: skip).")
    parser.add_argument("--rounds", type=int, default=2, help="Alternated rounds of each.")
    parser.add_argument(
        "--ort-threads",
        default=str(os.cpu_count() or 2),
        help="Single-threaded ONNX runs side by side (FOLDERVISION_ORT_THREADS); e.g. 1,2.",
    )
    parser.add_argument("--variants", default="fp32", help=f"Of: {', '.join(INDEX_VARIANTS)}.")
    parser.add_argument("--searches", type=int, default=3, help="Alternated start-up runs.")
    parser.add_argument("--quality", type=int, default=0, help="Photos for the quality part.")
    parser.add_argument(
        "--memory", type=int, default=0, help="Index this many links (repeating files), for RSS."
    )
    parser.add_argument(
        "--model-only",
        type=float,
        default=0,
        help="Seconds per setting for the network alone (ONNX Runtime fp32, no decoding).",
    )
    parser.add_argument("--straightforward", help=argparse.SUPPRESS)  # the child process
    arguments = parser.parse_args()
    if arguments.straightforward:
        straightforward_loop(Path(arguments.straightforward))
        return
    print(f"machine: {os.cpu_count()} cores, shared with other users (timings are noisy)")
    with tempfile.TemporaryDirectory() as scratch:
        environment = dict(os.environ, FOLDERVISION_CACHE=str(Path(scratch) / "cache"))
        from retrieval_speed import link_sample  # the one sampler of the benchmarks

        database = link_sample(
            Path(arguments.folder), max(arguments.files, 8), Path(scratch) / "db"
        )
        run_timed(foldervision("index", str(database)), environment)  # export ONNX, warm caches
        if arguments.files:
            threads = [int(value) for value in arguments.ort_threads.split(",")]
            variants = arguments.variants.split(",")
            benchmark_indexing(database, arguments.rounds, threads, variants, environment)
        if arguments.searches:
            benchmark_start_up(database, arguments.searches, environment)
        if arguments.memory:
            benchmark_memory(Path(arguments.folder), arguments.memory, Path(scratch), environment)
    if arguments.quality:
        benchmark_quality(Path(arguments.folder), arguments.quality)
    if arguments.model_only:
        benchmark_model_only(arguments.model_only)


def foldervision(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "foldervision", *arguments]


def run_timed(command: list[str], environment: dict[str, str]) -> Timing:
    """Run a whole process; wall time, its CPU time and its peak RSS (from wait4)."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, env=environment, stdout=subprocess.DEVNULL, stderr=errors
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            sys.exit(f"{' '.join(command)} failed:\n{errors.read().decode(errors='replace')}")
    return Timing(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


INDEX_VARIANTS: dict[str, list[str]] = {
    "fp32": [],
    "int8": ["--precision", "int8"],
    "keras": ["--backend", "keras"],
    "one-scale": ["--scales", "1"],
    "lite0": ["--model", "efficientnet-lite0"],
    "lite2": ["--model", "efficientnet-lite2"],
    "mobilenetv2+lite0": ["--model", "mobilenetv2+efficientnet-lite0"],
    "all-three": ["--model", "mobilenetv2+efficientnet-lite0+efficientnet-lite2"],
}
"""`--variants` names -> extra `foldervision index` options."""


def benchmark_indexing(
    database: Path,
    rounds: int,
    thread_counts: list[int],
    variants: list[str],
    environment: dict[str, str],
) -> None:
    images = sum(path.is_file() for path in database.iterdir())
    loop_command = [sys.executable, __file__, "--straightforward", str(database)]
    runs = {
        f"index {variant}" + (f", {threads} ORT runs" if variant != "keras" else ""): (
            foldervision("index", str(database), "--rebuild", *INDEX_VARIANTS[variant]),
            dict(environment, FOLDERVISION_ORT_THREADS=str(threads)),
        )
        for variant in variants
        for threads in (thread_counts if variant != "keras" else thread_counts[:1])
    }
    for command, with_threads in runs.values():  # warm-up: exports (and quantizes) once
        run_timed(command, with_threads)
    loops: list[Timing] = []
    timings: dict[str, list[Timing]] = {name: [] for name in runs}
    for round_number in range(1, rounds + 1):
        loops.append(run_timed(loop_command, environment))
        print(loops[-1].line(f"{round_number}: straightforward loop", images), flush=True)
        for name, (command, with_threads) in runs.items():
            timings[name].append(run_timed(command, with_threads))
            print(timings[name][-1].line(f"{round_number}: {name}", images), flush=True)
    loop_wall = sum(timing.wall for timing in loops)
    for name, measured in timings.items():
        ratio = loop_wall / sum(timing.wall for timing in measured)
        print(f"{name} vs straightforward loop (summed over rounds): {ratio:.2f}x faster")
    first, *others = timings
    for name in others:
        ratio = sum(t.wall for t in timings[name]) / sum(t.wall for t in timings[first])
        print(f"{name} vs {first} (summed over rounds): {ratio:.2f}x the time")
    run_timed(foldervision("index", str(database), "--rebuild"), environment)  # back to default


def benchmark_start_up(database: Path, runs: int, environment: dict[str, str]) -> None:
    query = next(path for path in sorted(database.iterdir()) if path.is_file())
    search = foldervision("search", str(query), "--database", str(database), "-k", "4")
    import_tensorflow = [sys.executable, "-c", "import tensorflow"]
    searches, imports = [], []
    for _ in range(runs):
        searches.append(run_timed(search, environment))
        imports.append(run_timed(import_tensorflow, environment))
    print(min(searches, key=lambda t: t.wall).line("whole `foldervision search` (best)", None))
    print(min(imports, key=lambda t: t.wall).line('`python -c "import tensorflow"` (best)', None))
    median = np.median([t.wall for t in imports]) / np.median([t.wall for t in searches])
    print(f"search vs importing TensorFlow (medians): {median:.2f}x faster")


def benchmark_memory(source: Path, count: int, scratch: Path, environment: dict[str, str]) -> None:
    """Peak RSS of one `foldervision index` over `count` files (the folder's files, repeated)."""
    from foldervision.images import list_image_files

    files = list_image_files(source)
    database = scratch / "memory"
    database.mkdir()
    for number in range(count):
        path = files[number % len(files)]
        (database / f"{number:06d}_{path.name}").symlink_to(path.resolve())
    timing = run_timed(foldervision("index", str(database)), environment)
    print(timing.line(f"index of {count} files (memory)", count))


# --------------------------------------------------------------------------------------------
# The straightforward loop, as a user would first write it (runs as its own process).


def straightforward_loop(folder: Path) -> None:
    from PIL import Image

    from foldervision.models.mobilenetv2_weights import (
        build_mobilenetv2_backbone,
        resolve_mobilenetv2_weights,
    )

    weights = resolve_mobilenetv2_weights("auto")
    model = build_mobilenetv2_backbone(IMAGE_SIZE, weights=weights.path if weights else None)
    paths = sorted(path for path in folder.iterdir() if path.is_file())
    vectors = []
    for start in range(0, len(paths), STRAIGHTFORWARD_BATCH_SIZE):
        batch = []
        for path in paths[start : start + STRAIGHTFORWARD_BATCH_SIZE]:
            with Image.open(path) as image:
                resized = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))
                batch.append(np.asarray(resized, dtype=np.float32))
        vectors.append(model.predict(np.stack(batch), verbose=0))
    assert sum(len(v) for v in vectors) == len(paths)


# --------------------------------------------------------------------------------------------
# Quality: Keras, ONNX fp32, ONNX INT8 and draft decoding on the same photos.


def benchmark_quality(folder: Path, count: int) -> None:
    from foldervision.datasets import scan_labelled_folder
    from foldervision.retrieval.embedder import mobilenetv2_embedder
    from foldervision.retrieval.evaluate import leave_one_out_scores

    labelled = scan_labelled_folder(folder)
    chosen = np.sort(np.random.default_rng(SEED).permutation(len(labelled.paths))[:count])
    paths = [labelled.paths[i] for i in chosen]
    labels = np.asarray(labelled.labels)[chosen]
    print(f"quality: {len(paths)} photos of {folder} (seed {SEED}), 224 px GeM, leave-one-out")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FOLDERVISION_CACHE"] = cache
        vectors = {
            "keras": embed(mobilenetv2_embedder(backend="keras"), paths),
            "onnx fp32": embed(mobilenetv2_embedder(backend="onnx"), paths),
            "onnx int8": embed(mobilenetv2_embedder(backend="onnx", precision="int8"), paths),
        }
        with jpeg_draft(IMAGE_SIZE):
            vectors["onnx fp32, JPEG draft"] = embed(mobilenetv2_embedder(backend="onnx"), paths)
    reference = {
        "onnx fp32": "keras",
        "onnx int8": "onnx fp32",
        "onnx fp32, JPEG draft": "onnx fp32",
    }
    for name, values in vectors.items():
        scores = leave_one_out_scores(values, labels, TOP_K)
        line = (
            f"{name:22s} P@4 {scores.precision_at_k:.4f}  mAP {scores.mean_average_precision:.4f}"
        )
        if name in reference:
            base = vectors[reference[name]]
            same_list, same_set = top_k_agreement(values, base)
            line += (
                f"  vs {reference[name]}: max abs diff {np.abs(values - base).max():.1e}, "
                f"same top 4 {same_list:.2%} (as a set {same_set:.2%})"
            )
        print(line, flush=True)


MODEL_ONLY_SETTINGS = ((2, 1, 16), (2, 1, 4), (1, 2, 16), (1, 2, 4), (1, 2, 2), (1, 2, 1))
"""(intra-op threads per run, runs side by side, images per run)."""


def benchmark_model_only(seconds: float) -> None:
    """Images/s of the network alone, one process per setting, settings alternated twice."""
    from foldervision.retrieval.embedder import mobilenetv2_embedder
    from foldervision.retrieval.onnx_backend import ensure_exported

    embedder = mobilenetv2_embedder()
    path = ensure_exported(embedder.spec, embedder.build_embedding_model)
    print(f"network alone: {path.name}, MobileNetV2 224 fp32, {seconds:.0f} s per setting")
    for round_number in (1, 2):
        for threads, runs, batch in MODEL_ONLY_SETTINGS:
            rate = subprocess.run(
                [sys.executable, "-c", MODEL_ONLY_CHILD, str(path), str(threads), str(runs),
                 str(batch), str(seconds)],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            print(
                f"{round_number}: {runs} run(s) of {threads} thread(s), {batch:2d} images per "
                f"run: {rate} images/s",
                flush=True,
            )


MODEL_ONLY_CHILD = """
import sys, threading, time
import numpy as np
from foldervision.onnx_runtime import open_session
path, threads, runs, batch, seconds = sys.argv[1], *map(int, sys.argv[2:5]), float(sys.argv[5])
session = open_session(path, threads)
name = session.get_inputs()[0].name
pixels = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3)).astype(np.float32)
session.run(None, {name: pixels})
done = [0] * runs
def work(slot):
    while time.perf_counter() < stop:
        session.run(None, {name: pixels})
        done[slot] += batch
start = time.perf_counter()
stop = start + seconds
workers = [threading.Thread(target=work, args=(slot,)) for slot in range(runs)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(f"{sum(done) / (time.perf_counter() - start):.1f}")
"""


def embed(embedder, paths: list[Path]) -> np.ndarray:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    vectors = np.concatenate([batch.vectors for batch in embedder.embed_files(paths)])
    seconds = time.perf_counter() - start
    name = f"{embedder.backend} {embedder.spec.precision}"
    print(f"  embedded {len(paths)} with {name} in {seconds:.1f} s (in-process, incl. export)")
    return vectors


def top_k_agreement(vectors: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Share of queries whose top 4 (itself left out) is the same list, and the same set."""
    ours, theirs = neighbours(vectors), neighbours(reference)
    same_list = float(np.mean((ours == theirs).all(axis=1)))
    same_set = float(np.mean([set(a) == set(b) for a, b in zip(ours, theirs)]))
    return same_list, same_set


def neighbours(vectors: np.ndarray) -> np.ndarray:
    from foldervision.retrieval.evaluate import squared_euclidean

    distances = squared_euclidean(vectors, vectors)
    np.fill_diagonal(distances, np.inf)
    return np.argsort(distances, axis=1, kind="stable")[:, :TOP_K]


class jpeg_draft:  # noqa: N801 - used as a context manager
    """Decode JPEGs in draft mode (DCT-scaled to at least `size` px), as the loader once did."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __enter__(self) -> None:
        from PIL import JpegImagePlugin

        self._load = load = JpegImagePlugin.JpegImageFile.load
        size = (self.size, self.size)

        def drafted_load(image):  # type: ignore[no-untyped-def]
            image.draft("RGB", size)  # does nothing once decoded or configured
            return load(image)

        JpegImagePlugin.JpegImageFile.load = drafted_load  # type: ignore[method-assign]

    def __exit__(self, *exc_info: object) -> None:
        from PIL import JpegImagePlugin

        JpegImagePlugin.JpegImageFile.load = self._load  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
