"""How close can indexing large JPEGs come to indexing small ones? The decoding floor, measured.

Issue 18 asks `foldervision index --rebuild` on 12-MP JPEGs for at least 60% of the same
command's images/s on 500-px copies. Whatever the pipeline does, every 12-MP file has to go
through libjpeg's entropy (Huffman) decoding of all its coefficients; DCT scaling only skips the
inverse transform of the ones it drops. This measures, in one run on the same machine:

1. the decode alone, single-threaded, per file: at 1/8 scale (the least work libjpeg can do for
   a JPEG: below any floor the loader would accept), at the scale the loader uses (no side under
   twice the network's input), and for the small copies at full size;
2. `foldervision index DB --rebuild` on both folders, whole processes, alternated round by round;
3. the best ratio any pipeline could reach on these cores: the small folder's index time plus the
   extra decoding of the large files spread perfectly over every core, against the small
   folder's time (network, start-up and storage assumed free for the large files beyond what the
   small ones already cost).

Run:  python benchmarks/decoding_floor.py LARGE_FOLDER SMALL_FOLDER [--rounds 3] [--files 300]
      e.g. /tmp/phone-s1 and /tmp/f500-s1 from benchmarks/upscaled_copies.py (see its --help)
Both folders are only read: the indexes go to a temporary folder.
Timings on a shared machine are noisy: run it on a quiet one and read the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from foldervision.images import SCALED_DECODING_FLOOR, list_image_files

INPUT_SIDE = 224
"""MobileNetV2's default input side, what `index` uses without --image-size."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("large", type=Path, help="Folder of large JPEGs (e.g. 12-MP copies).")
    parser.add_argument("small", type=Path, help="The same photos as small JPEGs (e.g. 500 px).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=300)
    arguments = parser.parse_args()
    large = list_image_files(arguments.large)[: arguments.files]
    small = list_image_files(arguments.small)[: arguments.files]
    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores; {len(large)} large and {len(small)} small files")

    eighth = decode_ms(large, INPUT_SIDE // 2)  # asks for less than 1/8 gives: 1/8 scale
    loader = decode_ms(large, SCALED_DECODING_FLOOR * INPUT_SIDE)
    small_full = decode_ms(small, None)
    print(f"decode, one thread, ms per file: large at 1/8 scale {eighth:.1f}, large as the "
          f"loader does (sides >= {SCALED_DECODING_FLOOR * INPUT_SIDE}) {loader:.1f}, "
          f"small whole {small_full:.1f}")  # fmt: skip

    with tempfile.TemporaryDirectory() as scratch:
        walls: dict[str, list[float]] = {"large": [], "small": []}
        for folder in (arguments.large, arguments.small):  # warm-up: ONNX export, file cache
            index_seconds(folder, Path(scratch))
        for _ in range(arguments.rounds):
            walls["large"].append(index_seconds(arguments.large, Path(scratch)))
            walls["small"].append(index_seconds(arguments.small, Path(scratch)))
    large_wall, small_wall = min(walls["large"]), min(walls["small"])
    print(f"index --rebuild, best of {arguments.rounds}: large {large_wall:.2f} s "
          f"({len(large) / large_wall:.1f} images/s), small {small_wall:.2f} s "
          f"({len(small) / small_wall:.1f} images/s); "
          f"ratio {small_wall / large_wall:.2f}")  # fmt: skip
    for name, per_file in (("1/8 scale", eighth), ("the loader's scale", loader)):
        floor = small_wall + len(large) * (per_file - small_full) / 1000 / cores
        print(f"best possible ratio with {name}: {small_wall / floor:.2f} "
              f"(large folder at least {floor:.2f} s)")  # fmt: skip


def decode_ms(paths: list[Path], floor: int | None) -> float:
    """Median ms to decode one file on one thread (draft to `floor` when given)."""
    times = []
    for path in paths:
        started = time.perf_counter()
        with Image.open(path) as image:
            if floor is not None:
                image.draft("RGB", (floor, floor))
            image.load()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def index_seconds(folder: Path, scratch: Path) -> float:
    command = [sys.executable, "-m", "foldervision", "index", str(folder), "--rebuild",
               "--index", str(scratch / f"{folder.name}.sqlite")]  # fmt: skip
    environment = dict(os.environ, FOLDERVISION_CACHE=str(scratch / "cache"))
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=environment)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
