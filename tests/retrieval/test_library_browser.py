"""The library page in a real browser (Debian's chromium driven by Playwright): browse with
endless scroll, filter by date and camera, search from a browsed photo, and see a photo copied
into the folder appear while a `FolderWatcher` follows it (`serve --watch`).

Real photos with camera EXIF, a real index (colour-layout vectors: the page is under test
here, the network in test_serve_browser.py), a real uvicorn server.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_embedders import colour_layout_embedder
from photo_library import camera_exif, write_photo
from serve_fixtures import live_server
from test_serve_browser import browser  # noqa: F401  (the chromium fixture)
from test_watch import FAST

from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.watch import FolderWatcher
from foldervision.web.app import create_app
from foldervision.web.library_routes import PAGE_SIZE

DATED = {
    "2021/summer/beach.jpg": ("2021:07:01 10:00:00", "Canon", "Canon EOS 5D"),
    "2021/summer/dinner.jpg": ("2021:07:15 20:30:00", "Apple", "iPhone 12"),
    "2022/snow.jpg": ("2022:01:05 09:00:00", "Apple", "iPhone 12"),
    "2023/garden.jpg": ("2023:03:03 12:00:00", None, None),
}
OLDER = 146
"""Photos of 2019 in `older/`: with DATED, 150, two and a half pages of the grid."""
TOTAL = OLDER + len(DATED)


def pixels(seed: int) -> np.ndarray:
    cells = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.kron(cells, np.ones((16, 16, 1), np.uint8))


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    for seed, (path, (taken, make, model)) in enumerate(DATED.items()):
        write_photo(folder / path, pixels(seed), camera_exif(taken, make=make, model=model))
    for number in range(OLDER):
        taken = f"2019:{1 + number // 28:02d}:{1 + number % 28:02d} 08:00:00"
        path = folder / "older" / f"{number:03d}.jpg"
        write_photo(path, pixels(1000 + number), camera_exif(taken))
    return folder


class Pages:
    """Pages opened on a server; `check_and_close` fails on any error a page's console
    reported (a CSP refusal included) or any request that failed. Call it before the server
    stops: a page left open would report the refused polls that follow."""

    def __init__(self, chromium) -> None:
        self.browser = chromium
        self.opened: list[tuple[object, list[str]]] = []

    def open(self, url: str):
        page = self.browser.new_page(viewport={"width": 1100, "height": 700})
        errors: list[str] = []
        page.on("console", lambda note: errors.append(note.text) if note.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("response", lambda reply: reply.ok or errors.append(f"{reply.status} {reply.url}"))
        page.goto(url + "/")
        self.opened.append((page, errors))
        return page

    def check_and_close(self) -> None:
        opened, self.opened = self.opened, []
        for page, _ in opened:
            page.close()
        assert [errors for _, errors in opened if errors] == []


@pytest.fixture
def pages(browser):  # noqa: F811
    opened = Pages(browser)
    yield opened
    for page, _ in opened.opened:
        page.close()


def tile_paths(page) -> list[str]:
    return page.eval_on_selector_all("#grid a", "links => links.map(link => link.dataset.path)")


def test_browse_scroll_filter_and_search_from_a_browsed_photo(library: Path, pages: Pages):
    service = RetrievalService.open(IndexSettings(library), embedder=colour_layout_embedder())
    service.update()
    with service, live_server(create_app(service)) as url:
        page = pages.open(url)
        assert page.locator("#info-images").inner_text() == f"{TOTAL} images"
        assert page.locator("#info-dates").inner_text() == "taken 2019-01-01 to 2023-03-03"
        assert not page.locator("#details dl").is_visible()
        page.click("#details summary")
        assert "layer" in page.locator("#details dl").inner_text()

        # Browse: newest first, each tile with its date and folder; scrolling loads the rest.
        page.wait_for_selector("#grid li >> nth=0")
        assert len(tile_paths(page)) == PAGE_SIZE
        assert tile_paths(page)[:4] == list(reversed(DATED))
        first = page.locator("#grid li").first.inner_text()
        assert "2023-03-03 12:00" in first and "2023" in first
        assert page.locator("#count").inner_text() == f"{TOTAL} photos"
        page.wait_for_function(
            "() => [...document.querySelectorAll('#grid img')].slice(0, 6)"
            ".every(image => image.complete && image.naturalWidth > 0)"
        )
        for loaded in (2 * PAGE_SIZE, TOTAL):
            page.mouse.wheel(0, 20000)
            page.wait_for_function(
                "n => document.querySelectorAll('#grid li').length === n", arg=loaded
            )
        assert page.locator("#grid-end").inner_text() == f"All {TOTAL} shown."
        assert len(set(tile_paths(page))) == TOTAL

        # Filter by date ("to" is inclusive), then by camera: the grid and the count follow.
        page.fill("#taken-from", "2021-07-10")
        page.fill("#taken-to", "2022-01-05")
        page.wait_for_function("() => document.querySelectorAll('#grid li').length === 2")
        assert tile_paths(page) == ["2022/snow.jpg", "2021/summer/dinner.jpg"]
        assert page.locator("#count").inner_text() == "2 photos"
        page.click("#clear-filters")
        page.select_option("#camera", "Canon EOS 5D")
        page.wait_for_function("() => document.querySelectorAll('#grid li').length === 1")
        assert tile_paths(page) == ["2021/summer/beach.jpg"]

        # Search from a browsed photo, among the photos a folder filter keeps.
        page.click("#clear-filters")
        page.select_option("#under", "2021")
        page.wait_for_function("() => document.querySelectorAll('#grid li').length === 2")
        page.click("#clear-filters")
        page.wait_for_function(
            "n => document.querySelectorAll('#grid li').length === n", arg=PAGE_SIZE
        )
        page.click('#grid a[data-path="2022/snow.jpg"]')
        page.wait_for_function(
            "() => document.getElementById('query-name').textContent === '2022/snow.jpg'"
        )
        assert page.url == url + "/"  # the click searched; it did not open the file
        page.wait_for_selector("#results li >> nth=3")
        assert page.locator("#results li").first.inner_text().startswith("#1 · 0.0000 · 2022/snow")
        page.select_option("#under", "2021")  # the search is run again among 2021's photos
        page.wait_for_function("() => document.querySelectorAll('#results li').length === 2")
        results = page.locator("#results").inner_text()
        assert "2021/summer/beach.jpg" in results and "2021/summer/dinner.jpg" in results
        pages.check_and_close()


def test_a_photo_copied_into_a_watched_folder_appears_without_a_reload(
    library: Path, pages: Pages, tmp_path: Path
):
    service = RetrievalService.open(IndexSettings(library), embedder=colour_layout_embedder())
    service.update()
    watcher = FolderWatcher(service, FAST)
    with service, watcher, live_server(create_app(service, watching=True)) as url:
        page = pages.open(url)
        page.wait_for_selector("#grid li >> nth=0")
        assert page.locator("#info-live").is_visible()
        arriving = write_photo(tmp_path / "fresh.png", pixels(7))  # no EXIF: taken now
        shutil.copy(arriving, library / "2023" / "fresh.png")

        page.wait_for_selector('#grid a[data-path="2023/fresh.png"]', timeout=60_000)
        assert tile_paths(page)[0] == "2023/fresh.png"  # the newest photo
        assert page.locator("#info-images").inner_text() == f"{TOTAL + 1} images"
        assert page.url == url + "/"
        pages.check_and_close()
