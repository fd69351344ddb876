"""The photo filters as users pass them: `search`, `duplicates`, `serve` and the web API.

Real photos with the EXIF a camera writes; `search` runs the real MobileNetV2 (96 px), the web
and duplicate tests the network-free colour-layout embedder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from fake_embedders import colour_layout_embedder
from photo_library import camera_exif, write_photo
from PIL import Image
from serve_fixtures import live_server
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.retrieval.filters import photo_filter
from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings
from foldervision.web.app import create_app

SIZE = ["--image-size", "96"]
CAMERAS = {
    "astronaut.jpg": ("2019:08:10 11:00:00", "Canon", "Canon EOS 5D"),
    "chelsea.jpeg": ("2023:06:02 09:15:00", "Apple", "iPhone 12"),
    "Coffee.PNG": ("2023:07:20 16:40:00", "Apple", "iPhone 12"),
}
"""Photos of the test folder given a capture date and a camera (the others have neither)."""


@pytest.fixture
def dated_photos(photo_folder: Path) -> Path:
    """The test photos, three of them re-saved with a camera's EXIF, one moved to a subfolder."""
    for name, (taken, make, model) in CAMERAS.items():
        with Image.open(photo_folder / name) as image:
            pixels = np.asarray(image.convert("RGB"))
        write_photo(photo_folder / name, pixels, camera_exif(taken=taken, make=make, model=model))
    (photo_folder / "holiday").mkdir()
    shutil.move(photo_folder / "ROCKET.BMP", photo_folder / "holiday" / "ROCKET.BMP")
    return photo_folder


def run(*arguments: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*map(str, arguments)])
    return result.exit_code, result.stdout, result.stderr


def found_paths(stdout: str) -> list[str]:
    [line] = stdout.splitlines()
    return [Path(match["path"]).name for match in json.loads(line)["results"]]


def test_search_filters_by_date_camera_and_folder_alone_or_combined(
    dated_photos: Path, cli_uses_session_embedder
) -> None:
    query = dated_photos / "chelsea.jpeg"
    base = ["search", query, "--database", dated_photos, "-k", "7", "--json", *SIZE]
    _, unfiltered, _ = run(*base)
    ranking = found_paths(unfiltered)

    def kept_in_order(names: set[str]) -> list[str]:
        return [name for name in ranking if name in names][:4]

    answers = {
        "summer 2023": run(*base[:6], "-k", "4", "--json", *SIZE, "--taken-after", "2023-06",
                           "--taken-before", "2023-09"),
        "iphone": run(*base[:6], "-k", "4", "--json", *SIZE, "--camera", "IPHONE"),
        "canon or older": run(*base[:6], "-k", "4", "--json", *SIZE, "--taken-before", "2020",
                              "--camera", "canon"),
        "holiday folder": run(*base[:6], "-k", "4", "--json", *SIZE, "--under", "holiday"),
    }  # fmt: skip

    assert len(ranking) == 7
    for name, (exit_code, _, stderr) in answers.items():
        assert exit_code == 0, (name, stderr)
    assert found_paths(answers["summer 2023"][1]) == kept_in_order({"chelsea.jpeg", "Coffee.PNG"})
    assert found_paths(answers["iphone"][1]) == kept_in_order({"chelsea.jpeg", "Coffee.PNG"})
    assert found_paths(answers["canon or older"][1]) == ["astronaut.jpg"]
    assert found_paths(answers["holiday folder"][1]) == ["ROCKET.BMP"]
    assert "2 of 7 photos: taken from 2023-06-01, taken before 2023-09-01" in answers[
        "summer 2023"][2]  # fmt: skip


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--under", "/", "--under /: not inside it"),
        ("--under", "nowhere", "--under nowhere: no such folder in it"),
        ("--taken-after", "yesterday", "--taken-after yesterday: not a date; pass one like 2023"),
    ],
)
def test_a_bad_filter_is_one_line_before_anything_is_indexed(
    photo_folder: Path, option: str, value: str, message: str
) -> None:
    exit_code, stdout, stderr = run(
        "search", photo_folder / "astronaut.jpg", "--database", photo_folder, option, value
    )

    assert exit_code == 2 and stdout == ""
    assert stderr.startswith(f"error: {message}") and len(stderr.splitlines()) == 1
    assert not (photo_folder / ".foldervision").exists()


def test_duplicates_take_the_filters_and_sort_newest_first(
    dated_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from foldervision.retrieval import service as retrieval_service

    monkeypatch.setattr(retrieval_service, "load_embedder", lambda _: colour_layout_embedder())
    shutil.copy2(dated_photos / "astronaut.jpg", dated_photos / "astronaut copy.jpg")
    shutil.copy2(dated_photos / "chelsea.jpeg", dated_photos / "holiday" / "chelsea copy.jpeg")

    _, by_path, _ = run("duplicates", dated_photos, "--json")
    _, newest_first, _ = run("duplicates", dated_photos, "--json", "--sort", "taken")
    _, only_iphone, stderr = run("duplicates", dated_photos, "--json", "--camera", "iphone")

    def groups(stdout: str) -> list[list[str]]:
        return [[Path(path).relative_to(dated_photos).as_posix()
                 for path in json.loads(line)["files"]]
                for line in stdout.splitlines()]  # fmt: skip

    cats = ["chelsea.jpeg", "holiday/chelsea copy.jpeg", "猫 cat.tif"]  # skimage's cat is Chelsea
    assert groups(by_path) == [["astronaut copy.jpg", "astronaut.jpg"], cats]
    assert groups(newest_first) == [cats, ["astronaut copy.jpg", "astronaut.jpg"]]  # 2019 last
    assert groups(only_iphone) == [["chelsea.jpeg", "holiday/chelsea copy.jpeg"]]
    assert "3 of 9 photos: camera 'iphone'" in stderr


@pytest.fixture
def served_with_filter(dated_photos: Path):
    """A live server whose default filter (`serve --camera iphone`) keeps two photos."""
    service = RetrievalService.open(IndexSettings(dated_photos), embedder=colour_layout_embedder())
    service.update()
    default = photo_filter(dated_photos, camera="iphone")
    with service, live_server(create_app(service, photo_filter=default)) as url:
        yield url, dated_photos


def test_the_web_api_takes_the_same_filters_as_query_parameters(served_with_filter) -> None:
    url, folder = served_with_filter

    def search(**parameters: str) -> httpx.Response:
        return httpx.get(url + "/api/search", params={"path": "astronaut.jpg", **parameters})

    def paths(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        return {match["path"] for match in response.json()["results"]}

    assert paths(search()) == {"chelsea.jpeg", "Coffee.PNG"}  # the server's filter
    assert paths(search(under="holiday")) == {"holiday/ROCKET.BMP"}  # the request's own
    assert paths(search(taken_before="2020", k="7")) == {"astronaut.jpg"}
    assert len(paths(search(under="", k="7"))) == 7  # naming a filter lifts the server's
    upload = httpx.post(
        url + "/api/search",
        params={"camera": "canon", "k": "7"},
        files={"file": ("mine.png", (folder / "chelsea.jpeg").read_bytes())},
    )
    assert paths(upload) == {"astronaut.jpg"}
    bad = search(taken_after="soon")
    assert bad.status_code == 400
    assert bad.json() == {"error": "--taken-after soon: not a date; pass one like 2023, 2023-06, "
                                   "2023-06-01 or 2023-06-01T18:30."}  # fmt: skip
    assert search(under="../..").status_code == 400
