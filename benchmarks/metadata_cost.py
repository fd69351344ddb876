"""What reading photo metadata costs against indexing the same photos (issue 18: under 5%).

On one folder (the 12-MP stand-ins of `benchmarks/upscaled_copies.py` are the case the budget
names), in the same run:
1. metadata alone: `read_photo_metadata` on every image file, headers only (capture time,
   camera, GPS, displayed size), best of `--repeats` passes over warm files;
2. a whole index: `RetrievalService.update()` into a fresh index in a temporary folder (decode,
   embed, store, and the same metadata reads, as `foldervision index --rebuild` does).
It prints both, ms per file, and the share of the index time the metadata reads take.

Run:  python benchmarks/metadata_cost.py FOLDER [--repeats 3] [--image-size 224] [--json]
The folder is only read: the index goes to a temporary folder (`--index`).
Timings on a shared machine are noisy: read the share, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="A folder of photos (only read).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="Last line: one JSON object.")
    arguments = parser.parse_args()
    report = measure(arguments.folder, arguments.repeats, arguments.image_size)
    for key, value in report.items():
        print(f"{key:24s} {value}")
    if arguments.json:
        print(json.dumps(report))


def measure(folder: Path, repeats: int, image_size: int | None) -> dict:
    from foldervision.images import list_image_files

    files = list_image_files(folder)
    for path in files:  # warm the page cache, so neither side pays for the disk first
        path.read_bytes()
    metadata_s = min(metadata_pass(files) for _ in range(max(1, repeats)))
    index_s = index_pass(folder, image_size)
    return {
        "files": len(files),
        "metadata_s": round(metadata_s, 3),
        "metadata_ms_per_file": round(1000 * metadata_s / max(1, len(files)), 3),
        "index_s": round(index_s, 2),
        "index_ms_per_file": round(1000 * index_s / max(1, len(files)), 2),
        "metadata_share_of_index": round(metadata_s / index_s, 4) if index_s else None,
    }


def metadata_pass(files: list[Path]) -> float:
    from foldervision.retrieval.photo_metadata import read_photo_metadata

    start = time.perf_counter()
    for path in files:
        read_photo_metadata(path, path.stat().st_mtime_ns)
    return time.perf_counter() - start


def index_pass(folder: Path, image_size: int | None) -> float:
    """One whole update into a fresh index, its embedder built (and exported) beforehand."""
    from foldervision.retrieval.service import RetrievalService
    from foldervision.retrieval.settings import IndexSettings

    with tempfile.TemporaryDirectory() as scratch:
        settings = IndexSettings(
            folder, index_path=Path(scratch) / "index.sqlite", image_size=image_size
        )
        with RetrievalService.open(settings) as service:
            service.warm_up()  # the network is built before the clock starts
            start = time.perf_counter()
            service.update()
            return time.perf_counter() - start


if __name__ == "__main__":
    main()
