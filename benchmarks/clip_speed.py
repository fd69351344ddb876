"""How fast is CLIP ViT-B/32 here: indexing images/s against MobileNetV2's, and a text query.

The model folder is the real ViT-B/32 architecture with random weights (the speed of a network
does not depend on its weights; no real CLIP weights are reachable from the build machine). Make
it once, where torch and open_clip_torch are installed (never in foldervision's environment):

    python scripts/export_clip.py ViT-B-32 none /tmp/clip-vit-b32-random

Then, in foldervision's environment:

    python benchmarks/clip_speed.py [--model-folder /tmp/clip-vit-b32-random] [--files 500]
        [--rounds 2] [--queries 20] [--searches 5]

1. Indexing, whole processes alternated round by round on the same files (flowers5 photos,
   symlinked into a temporary folder): `foldervision index DB --rebuild` (MobileNetV2, the
   default) and `... --model clip:FOLDER`; wall time, images/s, peak RSS, cores used, ratio.
2. A whole `foldervision search --text "..." --database DB -k 8` process, the model cached and
   the index built (the issue's goal: under 1.5 s), with and without --no-update; best and median.
3. The text tower alone: ms per query, one query per call as `search --text` runs it (median of
   --queries different texts, after one warm-up call).
Timings on a shared machine are noisy: read the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from embedding_speed import SHARED_FLOWERS, Timing, foldervision, run_timed  # noqa: E402

DEFAULT_MODEL_FOLDER = Path("/tmp/clip-vit-b32-random")
QUERIES = [
    "a red flower on grass",
    "receipt",
    "a yellow sunflower in a field",
    "a dog on the beach",
    "tulips in a vase",
    "a close-up of a daisy",
    "a dandelion gone to seed",
    "roses at night",
    "a bee on a purple flower",
    "a bouquet",
    "white petals",
    "a garden path",
    "pink blossom",
    "a field of poppies",
    "sunset over flowers",
    "a flower in the rain",
    "orange lilies",
    "a cactus flower",
    "wild flowers by a road",
    "a single rose on a table",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-folder", type=Path, default=DEFAULT_MODEL_FOLDER)
    parser.add_argument("--photos", type=Path, default=SHARED_FLOWERS)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--searches", type=int, default=5)
    parser.add_argument("--queries", type=int, default=20)
    arguments = parser.parse_args()
    if not (arguments.model_folder / "image.onnx").is_file():
        sys.exit(
            f"{arguments.model_folder}: no model folder; make it where torch and open_clip are "
            f"installed: python scripts/export_clip.py ViT-B-32 none {arguments.model_folder}"
        )
    model = f"clip:{arguments.model_folder}"
    environment = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="clip-speed-") as scratch:
        database = photo_folder(arguments.photos, arguments.files, Path(scratch))
        benchmark_indexing(database, model, arguments.rounds, environment)
        benchmark_text_search(database, model, arguments.searches, environment)
    benchmark_text_tower(arguments.model_folder, arguments.queries)


def photo_folder(source: Path, count: int, scratch: Path) -> Path:
    """`count` photos of `source` (every class, in path order), symlinked: nothing is copied."""
    from foldervision.images import list_image_files

    database = scratch / "photos"
    database.mkdir()
    files = list_image_files(source)
    step = max(1, len(files) // count)
    for number, path in enumerate(files[::step][:count]):
        (database / f"{number:06d}_{path.name}").symlink_to(path.resolve())
    return database


def benchmark_indexing(database: Path, model: str, rounds: int, environment: dict) -> None:
    images = sum(1 for _ in database.iterdir())
    commands = {
        "index mobilenetv2 (default)": foldervision("index", str(database), "--rebuild"),
        "index clip ViT-B/32": foldervision("index", str(database), "--rebuild", "--model", model),
    }
    for command in commands.values():  # warm-up: MobileNetV2's ONNX export, the page cache
        run_timed(command, environment)
    timings: dict[str, list[Timing]] = {name: [] for name in commands}
    for round_number in range(1, rounds + 1):
        for name, command in commands.items():
            timings[name].append(run_timed(command, environment))
            print(timings[name][-1].line(f"{round_number}: {name}", images), flush=True)
    walls = {name: sum(timing.wall for timing in measured) for name, measured in timings.items()}
    default, clip = walls.values()
    print(
        f"CLIP ViT-B/32 indexing takes {clip / default:.2f}x MobileNetV2's time "
        f"({images * rounds / clip:.1f} vs {images * rounds / default:.1f} images/s)"
    )


def benchmark_text_search(database: Path, model: str, runs: int, environment: dict) -> None:
    for extra in ([], ["--no-update"]):
        command = foldervision(
            "search",
            "--text",
            QUERIES[0],
            "--database",
            str(database),
            "-k",
            "8",
            "--model",
            model,
            *extra,
        )
        walls = [run_timed(command, environment).wall for _ in range(runs)]
        name = "whole `search --text`" + (" --no-update" if extra else "")
        print(
            f"{name:40s} best {min(walls):.2f} s, median {statistics.median(walls):.2f} s "
            f"over {runs} runs (goal: under 1.5 s)"
        )


def benchmark_text_tower(model_folder: Path, count: int) -> None:
    from foldervision.clip.embedder import load_clip_embedder

    embedder = load_clip_embedder(f"clip:{model_folder}")
    embedder.embed_texts(["warm-up"])
    milliseconds = []
    for query in (QUERIES * (1 + count // len(QUERIES)))[:count]:
        started = time.perf_counter()
        embedder.embed_texts([query])
        milliseconds.append(1000 * (time.perf_counter() - started))
    print(
        f"text tower, one query per call: median {statistics.median(milliseconds):.1f} ms, "
        f"best {min(milliseconds):.1f} ms over {count} queries"
    )


if __name__ == "__main__":
    main()
