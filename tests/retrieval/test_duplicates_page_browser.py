"""The duplicates review page in a real browser: change a keeper, move the others, undo."""

from __future__ import annotations

import hashlib
from pathlib import Path

from serve_fixtures import live_server
from test_retrieval_duplicates import planted_folder  # noqa: F401 (a fixture)
from test_serve_browser import browser  # noqa: F401 (a fixture)

from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings
from foldervision.web.app import create_app


def hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_review_change_a_keeper_move_the_others_and_undo(
    browser,  # noqa: F811
    planted_folder: tuple[Path, list[list[str]]],  # noqa: F811
    embedder,
    tmp_path: Path,
) -> None:
    folder, planted = planted_folder
    destination = tmp_path / "moved away"
    before = hashes(folder)
    settings = IndexSettings(folder, index_path=tmp_path / "index.sqlite")
    service = RetrievalService.open(settings, embedder=embedder)
    service.update()
    with service, live_server(create_app(service, thumbs=tmp_path / "thumbs")) as url:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url + "/duplicates")
        page.wait_for_selector("section.group")

        sections = page.locator("section.group")
        assert sections.count() == 3
        sizes = [sections.nth(i).locator("button.file").count() for i in range(3)]
        assert sizes == [3, 3, 2]  # largest first
        first = sections.nth(0)
        assert first.locator("button.keeper").get_attribute("data-path") == "astronaut.jpg"
        facts = first.locator("button.file", has_text="astronaut.jpg").locator(".facts")
        assert facts.text_content().startswith("200×200 · ") and "JPEG" in facts.text_content()

        captioned = "copies/astronaut captioned.jpg"
        first.locator(f'button.file[data-path="{captioned}"]').click()  # keep this one instead
        assert first.locator("button.keeper").get_attribute("data-path") == captioned
        page.fill("#destination", str(destination))
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#move")
        page.wait_for_selector("#done:not([hidden])")

        assert "Moved 5 files" in page.text_content("#done-text")
        moved = {p for group in planted for p in group} - {captioned, "chelsea.jpg",
                                                            "coffee.jpg"}  # fmt: skip
        on_disk = {path for path in hashes(destination) if not path.endswith(".jsonl")}
        assert on_disk == moved
        assert set(hashes(folder)) == set(before) - moved
        page.wait_for_function("() => document.querySelectorAll('section.group').length === 0")

        page.click("#undo")
        page.wait_for_function(
            "() => document.getElementById('done-text').textContent === 'Put back 5 files.'"
        )
        assert hashes(folder) == before
        page.wait_for_function("() => document.querySelectorAll('section.group').length === 3")
        page.close()
