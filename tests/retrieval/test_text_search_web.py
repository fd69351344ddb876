"""Search by words on the page: GET /api/search-text over the folder's CLIP index (the tiny
OpenCLIP fixture model of tests/clip), with the photo filters, its errors, how `serve` finds
the CLIP index beside the default one, and the text box in a real browser.

Expected answers are computed here from the model's own image and text vectors (the model
itself is checked against OpenCLIP in tests/clip/test_clip_reference.py)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import REPO_ROOT
from fake_embedders import colour_layout_embedder
from photo_library import camera_exif, write_photo
from PIL import Image
from serve_fixtures import live_server
from test_serve_browser import browser  # noqa: F401 (a fixture)

import foldervision.clip.models as clip_models
from foldervision.clip.embedder import load_clip_embedder
from foldervision.images import list_image_files
from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.text_index import text_index_settings
from foldervision.web.app import create_app

TINY_MODEL = REPO_ROOT / "tests" / "clip" / "fixtures" / "tiny-clip"
MODEL = f"clip:{TINY_MODEL}"
WORDS = "a red flower on grass"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real digits in three folders (four each) and three taken by a Canon, with EXIF."""
    from image_fixtures import SAMPLE_DIGITS

    folder = tmp_path_factory.mktemp("words") / "photos"
    for digit, name in enumerate(("zeros", "ones", "twos")):
        (folder / name).mkdir(parents=True)
        for source in sorted((SAMPLE_DIGITS / "test" / str(digit)).glob("*.png"))[:4]:
            shutil.copyfile(source, folder / name / source.name)
    for number, source in enumerate(sorted((SAMPLE_DIGITS / "test" / "1").glob("*.png"))[4:7]):
        with Image.open(source) as image:
            pixels = np.asarray(image.convert("RGB"))
        exif = camera_exif(f"2020:01:0{number + 1} 10:00:00", make="Canon", model="EOS 5D")
        write_photo(folder / "camera" / f"canon {number}.jpg", pixels, exif)
    return folder


@pytest.fixture(scope="module")
def clip_embedder():
    return load_clip_embedder(MODEL)


def expected(embedder, folder: Path, text: str, keep=lambda path: True) -> list[str]:
    """The database's paths nearest to `text` by the model's own vectors, among those kept."""
    files = [path for path in list_image_files(folder) if keep(path.relative_to(folder))]
    vectors = np.concatenate([batch.vectors for batch in embedder.embed_files(files)])
    distances = np.linalg.norm(vectors - embedder.embed_texts([text])[0], axis=1)
    return [files[index].relative_to(folder).as_posix() for index in np.argsort(distances)]


@pytest.fixture(scope="module")
def services(digits: Path, clip_embedder, tmp_path_factory: pytest.TempPathFactory):
    """The default index (colour-layout vectors) and the CLIP index beside it, both updated."""
    main = RetrievalService.open(IndexSettings(digits), embedder=colour_layout_embedder())
    main.update()
    words = RetrievalService.open(IndexSettings(digits, model=MODEL), embedder=clip_embedder)
    words.update()
    with main, words:
        yield main, words


@pytest.fixture(scope="module")
def served(services, tmp_path_factory: pytest.TempPathFactory):
    main, words = services
    thumbs = tmp_path_factory.mktemp("thumbs")
    with live_server(create_app(main, thumbs=thumbs, text_service=words)) as url:
        yield url


def test_words_rank_by_the_text_vector_among_the_filtered_photos(
    served: str, digits: Path, clip_embedder
) -> None:
    answer = httpx.get(f"{served}/api/search-text", params={"q": WORDS, "k": 5})
    assert answer.status_code == 200, answer.text
    assert answer.json()["query"] == WORDS
    paths = [match["path"] for match in answer.json()["results"]]
    assert paths == expected(clip_embedder, digits, WORDS)[:5]
    assert float(answer.headers["X-Search-Ms"]) >= 0

    ones = httpx.get(f"{served}/api/search-text", params={"q": WORDS, "k": 3, "under": "ones"})
    assert [match["path"] for match in ones.json()["results"]] == expected(
        clip_embedder, digits, WORDS, lambda path: path.parts[0] == "ones"
    )[:3]

    cameras = httpx.get(f"{served}/api/library").json()["cameras"]
    [canon] = [camera["name"] for camera in cameras]
    by_camera = httpx.get(
        f"{served}/api/search-text", params={"q": "receipt", "k": 10, "camera": canon}
    )
    assert sorted(match["path"] for match in by_camera.json()["results"]) == [
        f"camera/canon {number}.jpg" for number in range(3)
    ]
    before = httpx.get(  # the digits' date is their file's (today); the Canon's is EXIF's
        f"{served}/api/search-text",
        params={"q": "receipt", "k": 10, "taken_before": "2020-01-03"},
    )
    assert sorted(match["path"] for match in before.json()["results"]) == [
        "camera/canon 0.jpg", "camera/canon 1.jpg"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "q: Field required"),
        ({"q": "   "}, "q: type some words to search for, e.g. q=a red flower"),
        ({"q": "x" * 1001}, "q: 1001 characters; search with at most 1000"),
        ({"q": WORDS, "k": 0}, "k must be between 1 and 100, got 0."),
        ({"q": WORDS, "k": "many"}, "k: Input should be a valid integer"),
        ({"q": WORDS, "taken_after": "soon"}, "--taken-after soon"),
    ],
)
def test_bad_requests_are_400_with_one_line(served: str, params: dict, error: str) -> None:
    answer = httpx.get(f"{served}/api/search-text", params=params)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(error)


def test_without_a_clip_index_the_box_is_disabled_and_says_how_to_make_one(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "photos"
    write_photo(folder / "one.png", np.full((32, 32, 3), 200, np.uint8))
    settings = IndexSettings(folder)
    found, hint = text_index_settings(settings, folder / ".foldervision" / "index.sqlite")
    assert found is None
    assert hint.startswith("To search by words, index the folder with a CLIP model too: ")
    assert f"foldervision index {folder} --model clip-vit-b32" in hint

    with RetrievalService.open(settings, embedder=colour_layout_embedder()) as service:
        service.update()
        app = create_app(service, thumbs=tmp_path / "thumbs", text_hint=hint)
        with live_server(app) as url:
            answer = httpx.get(f"{url}/api/search-text", params={"q": WORDS})
            page = httpx.get(url + "/").text
    assert answer.status_code == 409 and answer.json() == {"error": hint}
    assert 'id="words-query"' in page and "disabled" in page.split('id="words-query"')[1][:200]
    assert hint.split(":")[0] in page


def test_serve_finds_the_clip_index_beside_the_default_one(
    services, digits: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A model folder given as clip:FOLDER is not named by its index, so the hint asks for it;
    a registered model that was pulled is found and opened."""
    main, _ = services
    settings = IndexSettings(digits)
    found, hint = text_index_settings(settings, main.index_path)
    clip_index = digits / ".foldervision" / "index.tiny-clip.sqlite"
    assert found is None
    assert hint == (
        f"{clip_index}: a CLIP index made by tiny-clip, whose model folder is not known here; "
        "serve with --text-model clip:FOLDER (the folder it was made with) to search by words."
    )

    pulled = tmp_path / "models"
    shutil.copytree(TINY_MODEL, pulled / "tiny-clip")
    monkeypatch.setattr(clip_models, "models_directory", lambda: pulled)
    registered = replace(clip_models.CLIP_MODELS.get("clip-vit-b32"), name="tiny-clip")
    monkeypatch.setitem(clip_models.CLIP_MODELS._entries, "tiny-clip", registered)
    found, hint = text_index_settings(settings, main.index_path)
    assert hint == "" and found is not None
    assert (found.model, found.index_path) == ("tiny-clip", clip_index)
    with RetrievalService.open(found) as words:
        [result] = words.search_texts([WORDS], 3)
    assert len(result.matches) == 3


def test_typing_words_in_the_page_shows_the_photos(
    browser,  # noqa: F811
    served: str,
    digits: Path,
    clip_embedder,
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    page.goto(served + "/")
    assert page.locator("#words-query").is_enabled()
    assert page.locator("#words-hint").count() == 0

    page.fill("#k", "4")
    page.fill("#words-query", WORDS)
    page.press("#words-query", "Enter")
    page.wait_for_function(
        "name => document.getElementById('query-name').textContent === name",
        arg=f"“{WORDS}”",
    )
    page.wait_for_function("() => document.querySelectorAll('#results li').length === 4")
    shown = [page.locator("#results a").nth(i).get_attribute("data-path") for i in range(4)]
    assert shown == expected(clip_embedder, digits, WORDS)[:4]
    assert page.locator("#query-image").is_hidden()

    # A filter applies to the search shown: only the photos under "twos" are ranked.
    page.select_option("#under", "twos")
    twos = expected(clip_embedder, digits, WORDS, lambda path: path.parts[0] == "twos")[:4]
    assert twos != expected(clip_embedder, digits, WORDS)[:4]  # the filter changes the answer
    page.wait_for_function(
        "paths => [...document.querySelectorAll('#results a')].map(a => a.dataset.path)"
        ".join('|') === paths",
        arg="|".join(twos),
    )
    page.close()
