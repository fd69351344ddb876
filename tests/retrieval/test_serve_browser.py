"""The page in a real browser (Debian's chromium driven by Playwright), real MobileNetV2 answers.

Skipped, with the reason, only where no chromium is installed (`scripts/test.sh` installs it
when it runs as root). FOLDERVISION_SCREENSHOT=PATH saves the page after the first search
(docs/images/serve.png was made that way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
from serve_fixtures import live_server

from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings
from foldervision.web.app import create_app

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/lib/chromium-browser/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def find_chromium() -> str | None:
    """The real chromium binary (not the /usr/bin shell wrapper, which prints noise)."""
    candidates = [os.environ.get("FOLDERVISION_CHROMIUM", ""), *CHROMIUM_CANDIDATES]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return os.path.realpath(found) if found else None


def wait_for_query(page, name: str) -> None:
    """Wait until the page shows `name` as its query (functions only: the page's CSP bans eval)."""
    page.wait_for_function(
        "name => document.getElementById('query-name').textContent === name", arg=name
    )


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "no chromium browser installed (apt-get install chromium, or FOLDERVISION_CHROMIUM)"
        )
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def test_pick_upload_drop_and_click_through_results(
    browser, photo_folder: Path, embedder, tmp_path: Path
):
    queries = photo_folder.parent / "query_images"
    queries.mkdir()
    with Image.open(photo_folder / "chelsea.jpeg") as image:
        image.crop((10, 10, 140, 100)).save(queries / "cat crop.png")
    with Image.open(photo_folder / "astronaut.jpg") as image:
        image.resize((120, 120)).save(queries / "astronaut small.png")
    (tmp_path / "notes.png").write_text("not an image")

    service = RetrievalService.open(IndexSettings(photo_folder), embedder=embedder)
    service.update()
    with service, live_server(create_app(service, queries)) as url:
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        page.goto(url + "/")
        assert page.locator("#info-images").inner_text() == f"{len(service.index)} images"
        assert page.locator("#strip button.query").count() == 2

        # Pick a query from the strip: k (4) results, ranked, with distances and names.
        page.click('#strip button[data-path="cat crop.png"]')
        page.wait_for_selector("#results li >> nth=3")
        assert page.locator("#results li").count() == 4
        assert page.locator("#query-name").inner_text() == "cat crop.png"
        first = page.locator("#results li").first.inner_text()
        assert first.startswith("#1 · ") and "chelsea.jpeg" in first
        page.wait_for_function(
            "() => [...document.images].every(image => image.complete && image.naturalWidth > 0)"
        )
        if os.environ.get("FOLDERVISION_SCREENSHOT"):
            page.screenshot(path=os.environ["FOLDERVISION_SCREENSHOT"])

        # Upload a file with k = 2.
        page.fill("#k", "2")
        page.set_input_files("#file", str(photo_folder / "Coffee.PNG"))
        page.wait_for_function(
            "() => document.querySelector('#query-name').textContent === 'Coffee.PNG'"
        )
        page.wait_for_function("() => document.querySelectorAll('#results li').length === 2")
        assert "Coffee.PNG" in page.locator("#results li").first.inner_text()

        # Click the second result: it becomes the query and the grid changes.
        second = page.locator("#results a").nth(1)
        clicked = second.get_attribute("data-path")
        before = page.locator("#results").inner_text()
        second.click()
        wait_for_query(page, clicked)
        assert page.locator("#results").inner_text() != before
        assert page.locator("#results li").first.inner_text().startswith(f"#1 · 0.0000 · {clicked}")
        assert page.url == url + "/"  # the click searched; it did not navigate away

        # Drop a file on the upload box.
        data = list((photo_folder / "ROCKET.BMP").read_bytes())
        page.evaluate(
            """data => {
                const transfer = new DataTransfer();
                transfer.items.add(new File([new Uint8Array(data)], 'dropped.bmp'));
                const drop = document.getElementById('drop');
                drop.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}));
            }""",
            data,
        )
        wait_for_query(page, "dropped.bmp")
        assert "ROCKET.BMP" in page.locator("#results li").first.inner_text()

        # A failed search says why, on the page.
        page.set_input_files("#file", str(tmp_path / "notes.png"))
        message = page.locator("#message.error")
        message.wait_for()
        assert message.inner_text().startswith("Search failed: notes.png: cannot decode image")
        page.close()
