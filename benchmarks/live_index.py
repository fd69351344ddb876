"""The live library: how soon a copied photo is searchable under `serve --watch`, whether 1,000
photos copied at once are all indexed exactly once, and how fast the page's first screen opens
on a 10^5-photo library. Prints the figures.

1. latency: `foldervision serve DATABASE --watch` runs (a real process, default MobileNetV2 at
   224 px) over --start flowers5 photos. --copies more are copied in one at a time; for each,
   the time from the start of the copy until a search with the photo by its path finds the
   photo itself first (before it is indexed, that search decodes the file and finds its
   nearest other photo). Median and max of the --copies.
2. burst: --burst more flowers5 photos copied into a folder at once, as fast as the disk
   takes them; the time until /api/info counts them all, then: the catalogue holds each path
   once (SQLite, read-only) and the server reported --burst files embedded in all, so none
   was embedded twice (a half-copied file indexed early would be embedded again).
3. page: a 10^5-photo library as synthetic catalogue rows (embedding 10^5 photos takes hours on
   a CPU; the page never embeds): an 8-dimensional spec, random unit vectors, capture times
   spread over ten years in YEAR/MONTH folders, real JPEG files for the newest --page-files
   only (a first screen asks for no other). Served in-process with the real app; thumbnails of
   the first screen made once beforehand. Times, in Debian's chromium (Playwright): from
   `goto` until the first screen's thumbnails (FIRST_SCREEN) are all shown, over --page-loads
   fresh pages; and /api/files at offsets 0, half and the end (deep pages stay cheap: SQLite
   sorts, nothing is read into Python but the page).

Run:  python benchmarks/live_index.py [--parts latency,burst,page] [--workdir DIR]
      quick check: --start 20 --copies 3 --burst 40 --page-photos 2000 --image-size 96
The flowers folder is only read. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
FIRST_SCREEN = 18
"""Thumbnails on a 1100x700 screen: three rows of six."""
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/lib/chromium-browser/chromium-browser")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="latency,burst,page")
    parser.add_argument("--folder", default=str(SHARED_FLOWERS))
    parser.add_argument("--workdir", default=None, help="Default: a temporary folder.")
    parser.add_argument("--start", type=int, default=300, help="Photos indexed before serving.")
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=None, help="Default: the model's.")
    parser.add_argument("--page-photos", type=int, default=100_000)
    parser.add_argument("--page-files", type=int, default=120)
    parser.add_argument("--page-loads", type=int, default=5)
    arguments = parser.parse_args()
    parts = set(arguments.parts.split(","))
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(arguments.workdir or scratch)
        if parts & {"latency", "burst"}:
            live_figures(arguments, parts, workdir)
        if "page" in parts:
            page_figures(arguments, workdir / "page_library")


# --------------------------------------------------------------------------------------------
# 1 and 2: a real `serve --watch` process.


class ServeProcess:
    """`foldervision serve DATABASE --watch --port 0`, its stderr collected line by line."""

    def __init__(self, database: Path, image_size: int | None) -> None:
        command = [sys.executable, "-m", "foldervision", "serve", str(database), "--watch"]
        command += ["--port", "0"] + (["--image-size", str(image_size)] if image_size else [])
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def url(self, timeout: float = 1800) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            for line in self.lines:
                if found := re.search(r" at (http://\S+?)/? \(Ctrl-C", line):
                    return found.group(1)
            time.sleep(0.1)
        raise RuntimeError("serve did not start:\n" + "\n".join(self.lines))

    def embedded_reports(self) -> int:
        """Files the server reported embedded so far ("indexed N new or changed" lines)."""
        return sum(
            int(found.group(1))
            for line in list(self.lines)
            if (found := re.search(r"indexed (\d+) new or changed", line))
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def live_figures(arguments: argparse.Namespace, parts: set[str], workdir: Path) -> None:
    from foldervision.images import list_image_files

    sources = list_image_files(arguments.folder)
    needed = arguments.start + arguments.copies + arguments.burst
    if len(sources) < needed:
        raise SystemExit(f"{arguments.folder}: {len(sources)} photos, {needed} needed.")
    database = workdir / "live_database"
    shutil.rmtree(database, ignore_errors=True)
    for folder in ("start", "incoming", "burst"):  # watched from the start
        (database / folder).mkdir(parents=True)
    for path in sources[: arguments.start]:
        shutil.copy2(path, database / "start" / f"{path.parent.name}_{path.name}")
    started = time.perf_counter()
    server = ServeProcess(database, arguments.image_size)
    try:
        url = server.url()
        seconds = time.perf_counter() - started
        print(f"serve --watch: {arguments.start} photos indexed, serving after {seconds:.1f} s")
        with httpx.Client(base_url=url, timeout=120) as client:
            rest = sources[arguments.start :]
            if "latency" in parts:
                copy_latency(client, database, rest[: arguments.copies])
            if "burst" in parts:
                burst = rest[arguments.copies : arguments.copies + arguments.burst]
                copy_burst(client, server, database, burst)
    finally:
        server.stop()


def copy_latency(client: httpx.Client, database: Path, sources: list[Path]) -> None:
    seconds = []
    for path in sources:
        relative = f"incoming/{path.parent.name}_{path.name}"
        started = time.perf_counter()
        shutil.copy2(path, database / relative)
        while not finds_itself(client, relative):
            time.sleep(0.05)
        seconds.append(time.perf_counter() - started)
        time.sleep(0.5)  # the next copy is a new event, not part of this batch
    print(
        f"copied photo searchable after: median {statistics.median(seconds):.2f} s, max "
        f"{max(seconds):.2f} s, over {len(seconds)} copies (goal: median under 5 s)"
    )


def finds_itself(client: httpx.Client, relative: str) -> bool:
    response = client.get("/api/search", params={"path": relative, "k": 1})
    if response.status_code != 200:
        return False
    results = response.json()["results"]
    return bool(results) and results[0]["path"] == relative


def copy_burst(
    client: httpx.Client, server: ServeProcess, database: Path, sources: list[Path]
) -> None:
    before_images = client.get("/api/info").json()["images"]
    before_reports = server.embedded_reports()
    expected = {f"burst/{path.parent.name}_{path.name}" for path in sources}
    started = time.perf_counter()
    for path in sources:
        shutil.copy2(path, database / "burst" / f"{path.parent.name}_{path.name}")
    copied = time.perf_counter() - started
    while client.get("/api/info").json()["images"] < before_images + len(sources):
        time.sleep(0.2)
    indexed = time.perf_counter() - started
    time.sleep(5)  # a late duplicate would show up now
    index_path = database / ".foldervision" / "index.sqlite"
    with sqlite3.connect(f"{index_path.as_uri()}?mode=ro", uri=True) as connection:
        paths = [row[0] for row in connection.execute("SELECT path FROM files")]
    burst_paths = [path for path in paths if path.startswith("burst/")]
    once = len(burst_paths) == len(set(burst_paths)) and set(burst_paths) == expected
    reported = server.embedded_reports() - before_reports
    print(
        f"{len(sources)} photos copied at once ({copied:.1f} s to copy): all indexed after "
        f"{indexed:.1f} s; catalogue holds each exactly once: {once}; embedded in all: "
        f"{reported} (exactly once each: {reported == len(sources)})"
    )


# --------------------------------------------------------------------------------------------
# 3: the page on a synthetic 10^5-photo library.


def page_figures(arguments: argparse.Namespace, folder: Path) -> None:
    from foldervision.retrieval.embedder import Embedder
    from foldervision.retrieval.index import ImageIndex
    from foldervision.retrieval.service import RetrievalService
    from foldervision.retrieval.settings import IndexSettings
    from foldervision.web.app import create_app
    from foldervision.web.server import serving_in_thread

    spec = synthetic_spec()
    built = build_synthetic_library(folder, arguments.page_photos, arguments.page_files)
    index = ImageIndex.open(IndexSettings(folder), spec)
    service = RetrievalService(index, Embedder(spec, build_feature_model=lambda: None))
    print(f"\npage: {len(index)} photos, synthetic rows ({built}), {arguments.page_files} files")
    with service, serving_in_thread(create_app(service)) as url:
        with httpx.Client(base_url=url, timeout=120) as client:
            first = client.get("/api/files", params={"limit": arguments.page_files}).json()
            for file in first["files"]:  # thumbnails already made, as the goal states
                client.get(f"/thumbs/db/{file['path']}").raise_for_status()
            for offset in (0, len(index) // 2, max(0, len(index) - 60)):
                times = []
                for _ in range(5):
                    started = time.perf_counter()
                    client.get("/api/files", params={"offset": offset}).raise_for_status()
                    times.append((time.perf_counter() - started) * 1000)
                print(f"  /api/files offset {offset}: median {statistics.median(times):.0f} ms")
        loads = first_screen_times(url, arguments.page_loads)
    print(
        f"  first screen ({FIRST_SCREEN} thumbnails shown) in chromium: median "
        f"{statistics.median(loads):.2f} s, max {max(loads):.2f} s over {len(loads)} loads "
        "(goal: under 1 s)"
    )


def synthetic_spec():
    from foldervision.retrieval.embedder import EmbedderSpec

    return EmbedderSpec("synthetic", "none", 16, "rgb", layer="none", pooling="none")


def build_synthetic_library(folder: Path, count: int, real_files: int) -> str:
    """Catalogue rows, metadata and vectors for `count` photos through the index's own API;
    real JPEGs for the newest `real_files`. Kept in `folder` and reused at the same count."""
    from foldervision.retrieval.catalogue import FileState
    from foldervision.retrieval.index import ImageIndex
    from foldervision.retrieval.photo_metadata import PhotoMetadata
    from foldervision.retrieval.settings import IndexSettings

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cameras = [("Apple", "iPhone 12"), ("Canon", "Canon EOS 5D"), ("Google", "Pixel 7")]
    cameras.append((None, None))
    started = time.perf_counter()
    with ImageIndex.open(IndexSettings(folder), synthetic_spec()) as index:
        if len(index) == count:
            return "reused"
        for first in range(len(index), count, 10_000):
            numbers = range(first, min(count, first + 10_000))
            rows = [(synthetic_path(n, count), FileState(1000, n)) for n in numbers]
            vectors = rng.normal(size=(len(rows), 8)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            metadata = [
                PhotoMetadata(synthetic_taken(n, count), "exif", None, *cameras[n % 4])
                for n in numbers
            ]
            with index.catalogue.transaction():
                ids = index.catalogue.record_files(rows)
                index.store.upsert(ids, vectors)
                index.catalogue.photos.record(list(zip(ids.tolist(), metadata)))
        index.catalogue.mark_updated()
        index.flush()
    for n in range(count - real_files, count):
        path = folder / synthetic_path(n, count)
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8).repeat(64, 0).repeat(64, 1)
        Image.fromarray(pixels).save(path, quality=85)  # 512x384
    return f"built in {time.perf_counter() - started:.0f} s"


def synthetic_taken(number: int, count: int) -> str:
    """Ten years from 2015, in order: the highest numbers are the newest photos."""
    seconds = int(number * (10 * 365.25 * 86400) / count)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1420070400 + seconds))


def synthetic_path(number: int, count: int) -> str:
    taken = synthetic_taken(number, count)
    return f"{taken[:4]}/{taken[5:7]}/IMG_{number:06d}.jpg"


def first_screen_times(url: str, loads: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    screen = (
        f"() => {{ const images = [...document.querySelectorAll('#grid img')]"
        f".slice(0, {FIRST_SCREEN}); return images.length === {FIRST_SCREEN} && "
        "images.every(image => image.complete && image.naturalWidth > 0); }"
    )
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        for _ in range(loads):
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            started = time.perf_counter()
            page.goto(url + "/")
            page.wait_for_function(screen, timeout=120_000)
            times.append(time.perf_counter() - started)
            page.close()
        browser.close()
    return times


def chromium() -> str:
    for candidate in (os.environ.get("FOLDERVISION_CHROMIUM", ""), *CHROMIUM_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise SystemExit("no chromium: apt-get install chromium (or set FOLDERVISION_CHROMIUM)")
    return os.path.realpath(found)


if __name__ == "__main__":
    main()
