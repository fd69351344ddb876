"""How fast does `foldervision serve` answer on a 10^4-image database? Prints the figures.

1. Builds (once, kept in --workdir) a database of N images: the flowers5 photos, then resized
   variants of them (90%, 80%, ...) until there are N, plus a query_images/ folder beside it
   (centre crops, not indexed); indexes it with the default MobileNetV2 (224 px).
2. In a fresh process per mode, with the index present: opens the service and checks the index
   (what `serve` does before listening), then starts the real app on uvicorn and measures over
   HTTP on loopback:
   - cold:  no warm-up; the first search builds and traces the network (what a page would see
            if serve did not warm up);
   - serve: as `foldervision serve` does: warm-up at start-up, then the first search.
   then --repeats more searches (uploads of the query images and searches by indexed path),
   with the server's own time from the `X-Search-Ms` header (decode + embed + search).

Run:  python benchmarks/serve_latency.py [--workdir /tmp/serve_bench] [--images 10000]
The flowers folder is only read. Timings on a shared machine are noisy: compare figures of
one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
QUERIES_PER_CLASS = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(SHARED_FLOWERS))
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--workdir", default=None, help="Kept and reused (default: temporary).")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--measure", choices=["cold", "serve"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        print(json.dumps(measure(Path(arguments.workdir), arguments.measure, arguments.repeats)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(arguments.workdir or scratch)
        database = build_database(Path(arguments.folder), arguments.images, workdir)
        index_database(database)
        for mode in ("cold", "serve"):
            command = [sys.executable, __file__, "--workdir", str(workdir), "--measure", mode]
            command += ["--repeats", str(arguments.repeats)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            report(mode, json.loads(output.strip().splitlines()[-1]))


def build_database(source: Path, count: int, workdir: Path) -> Path:
    """flowers5 photos, then 90%, 80%, ... resized variants until `count`; made once."""
    from foldervision.images import list_image_files

    database = workdir / "database"
    queries = workdir / "query_images"
    files = list_image_files(source)
    if database.is_dir() and len(list_image_files(database)) == count:
        print(f"database: {count} images in {database} (reused)")
        return database
    for number in range(count):
        original = files[number % len(files)]
        variant = number // len(files)
        target = database / original.parent.name / f"v{variant}_{original.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if variant == 0:
            target.write_bytes(original.read_bytes())
            continue
        with Image.open(original) as image:
            scale = 1 - 0.1 * variant
            size = (max(16, int(image.width * scale)), max(16, int(image.height * scale)))
            image.convert("RGB").resize(size, Image.Resampling.BILINEAR).save(target, quality=90)
    queries.mkdir(parents=True, exist_ok=True)
    for folder in sorted(path for path in source.iterdir() if path.is_dir()):
        for original in list_image_files(folder)[-QUERIES_PER_CLASS:]:
            with Image.open(original) as image:
                w, h = image.size
                crop = image.convert("RGB").crop((w // 8, h // 8, w - w // 8, h - h // 8))
                crop.save(queries / f"{folder.name}_{original.stem}.jpg", quality=90)
    print(f"database: {count} images from {len(files)} flowers5 photos, in {database}")
    return database


def index_database(database: Path) -> None:
    from foldervision.retrieval.service import RetrievalService
    from foldervision.retrieval.settings import IndexSettings

    started = time.perf_counter()
    with RetrievalService.open(IndexSettings(database)) as service:
        update = service.update()
        size = len(service.index)
    seconds = time.perf_counter() - started
    print(f"index: {size} images, {len(update.embedded)} embedded now, {seconds:.1f} s")


def measure(workdir: Path, mode: str, repeats: int) -> dict:
    """One fresh process: start-up as serve does it, then searches over HTTP on loopback."""
    import httpx

    from foldervision.retrieval.service import RetrievalService
    from foldervision.retrieval.settings import IndexSettings
    from foldervision.web.app import create_app, default_query_folder
    from foldervision.web.server import serving_in_thread

    database = workdir / "database"
    figures: dict = {}
    started = time.perf_counter()
    service = RetrievalService.open(IndexSettings(database))
    update = service.update()
    figures["open_and_check_s"] = time.perf_counter() - started
    figures["embedded_at_start"] = len(update.embedded)
    figures["images"] = len(service.index)
    if mode == "serve":
        started = time.perf_counter()
        service.warm_up()
        figures["warm_up_s"] = time.perf_counter() - started
    queries = sorted((workdir / "query_images").glob("*.jpg"))
    indexed = [path for _, path in service.index.catalogue.files()][::997][:10]
    app = create_app(service, default_query_folder(database))
    with service, serving_in_thread(app) as url, httpx.Client(base_url=url, timeout=300) as client:

        def upload(path: Path) -> tuple[float, float]:
            started = time.perf_counter()
            response = client.post("/api/search", files={"file": (path.name, path.read_bytes())})
            response.raise_for_status()
            return (time.perf_counter() - started) * 1000, float(response.headers["x-search-ms"])

        def by_path(relative: str) -> tuple[float, float]:
            started = time.perf_counter()
            response = client.get("/api/search", params={"path": relative})
            response.raise_for_status()
            return (time.perf_counter() - started) * 1000, float(response.headers["x-search-ms"])

        figures["first_upload_ms"] = upload(queries[0])
        uploads = [upload(queries[i % len(queries)]) for i in range(repeats)]
        paths = [by_path(indexed[i % len(indexed)]) for i in range(repeats)]
    for name, timings in (("upload", uploads), ("path", paths)):
        client_ms = sorted(t[0] for t in timings)
        server_ms = sorted(t[1] for t in timings)
        figures[f"{name}_client_median_ms"] = statistics.median(client_ms)
        figures[f"{name}_server_median_ms"] = statistics.median(server_ms)
        figures[f"{name}_server_p95_ms"] = server_ms[int(0.95 * (len(server_ms) - 1))]
    figures["repeats"] = repeats
    return figures


def report(mode: str, figures: dict) -> None:
    first_client, first_server = figures["first_upload_ms"]
    print(f"\n[{mode}] {figures['images']} images indexed; fresh process")
    print(f"  open service + check index (unchanged): {figures['open_and_check_s']:.2f} s")
    if "warm_up_s" in figures:
        print(f"  warm-up at start-up (build + trace network): {figures['warm_up_s']:.2f} s")
    print(
        f"  first search (upload): {first_client:.0f} ms at the client, "
        f"{first_server:.0f} ms in the server"
    )
    for name in ("upload", "path"):
        print(
            f"  {figures['repeats']} more by {name}: server median "
            f"{figures[f'{name}_server_median_ms']:.1f} ms, p95 "
            f"{figures[f'{name}_server_p95_ms']:.1f} ms; client median "
            f"{figures[f'{name}_client_median_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
