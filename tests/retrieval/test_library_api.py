"""Browsing the library over the API: pages of photos, the filters, the header's facts, and
thumbnails of large photos made from a reduced decode. Real photos with camera EXIF, a real
index (colour-layout vectors), a real uvicorn server."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from fake_embedders import colour_layout_embedder
from photo_library import FIXED_FILE_TIME, camera_exif, write_photo
from PIL import Image, JpegImagePlugin
from serve_fixtures import live_server

from foldervision.images import save_image_atomic
from foldervision.retrieval.filters import PhotoFilter
from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings
from foldervision.web.app import create_app
from foldervision.web.files import THUMBNAIL_SIDE, thumbnail

CAMERA_PHOTOS = {
    "2021/summer/beach.jpg": ("2021:07:01 10:00:00", "Canon", "Canon EOS 5D"),
    "2021/summer/dinner.jpg": ("2021:07:15 20:30:00", "Apple", "iPhone 12"),
    "2022/snow.jpg": ("2022:01:05 09:00:00", "Apple", "iPhone 12"),
    "2023/garden.jpg": ("2023:03:03 12:00:00", None, None),
}
MANY = 130


def pixels(seed: int) -> np.ndarray:
    cells = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.kron(cells, np.ones((16, 16, 1), np.uint8))


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four camera photos in dated folders, one without EXIF at the top, 130 more in `many/`
    taken a day apart in 2019."""
    folder = tmp_path_factory.mktemp("library")
    for seed, (path, (taken, make, model)) in enumerate(CAMERA_PHOTOS.items()):
        write_photo(folder / path, pixels(seed), camera_exif(taken, make=make, model=model))
    write_photo(folder / "top.png", pixels(99), file_time=FIXED_FILE_TIME)
    for number in range(MANY):
        taken = f"2019:{1 + number // 28:02d}:{1 + number % 28:02d} 08:00:00"
        path = folder / "many" / f"{number:03d}.jpg"
        write_photo(path, pixels(1000 + number), camera_exif(taken))
    return folder


@pytest.fixture(scope="module")
def served(library: Path):
    service = RetrievalService.open(IndexSettings(library), embedder=colour_layout_embedder())
    service.update()
    with service, live_server(create_app(service)) as url:
        yield url


def files(url: str, **params) -> dict:
    response = httpx.get(url + "/api/files", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_pages_of_the_library_newest_first_cover_every_photo_once(served: str):
    pages = [files(served, offset=offset, limit=50) for offset in (0, 50, 100, 150)]
    listed = [file for page in pages for file in page["files"]]

    assert [page["total"] for page in pages] == [MANY + 5] * 4
    assert [len(page["files"]) for page in pages] == [50, 50, 35, 0]
    assert len({file["path"] for file in listed}) == MANY + 5
    assert [file["path"] for file in listed[:5]] == [
        "2023/garden.jpg", "2022/snow.jpg", "2021/summer/dinner.jpg", "2021/summer/beach.jpg",
        "top.png",
    ]  # fmt: skip
    taken = [file["taken"] for file in listed]
    assert taken == sorted(taken, reverse=True)
    first = listed[2]
    assert first["folder"] == "2021/summer" and first["camera"] == "Apple iPhone 12"
    assert first["taken"] == "2021-07-15T20:30:00" and first["taken_source"] == "exif"
    assert listed[4]["folder"] == "" and listed[4]["taken_source"] == "file"
    by_path = files(served, sort="path", limit=3)["files"]
    assert [file["path"] for file in by_path] == [
        "2021/summer/beach.jpg", "2021/summer/dinner.jpg", "2022/snow.jpg",
    ]  # fmt: skip


def test_the_filters_narrow_browsing_as_they_narrow_search(served: str):
    def paths(**params) -> list[str]:
        answer = files(served, **params)
        assert answer["total"] == len(answer["files"])
        return [file["path"] for file in answer["files"]]

    assert paths(taken_after="2021-07-10", taken_before="2022-02") == [
        "2022/snow.jpg", "2021/summer/dinner.jpg",
    ]  # fmt: skip
    assert paths(camera="iphone") == ["2022/snow.jpg", "2021/summer/dinner.jpg"]
    assert paths(under="2021") == ["2021/summer/dinner.jpg", "2021/summer/beach.jpg"]
    assert paths(under="2021", camera="canon") == ["2021/summer/beach.jpg"]
    assert paths(taken_after="2024") == []
    search = httpx.get(
        served + "/api/search", params={"path": "2022/snow.jpg", "k": 10, "under": "2021"}
    ).json()
    assert {match["path"] for match in search["results"]} == {
        "2021/summer/dinner.jpg", "2021/summer/beach.jpg",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "limit must be between 1 and 500, got 0"),
        ({"limit": 501}, "limit must be between 1 and 500, got 501"),
        ({"offset": -1}, "offset must be 0 or more, got -1"),
        ({"sort": "size"}, "sort size: use one of taken, path"),
        ({"taken_after": "last week"}, "--taken-after last week: not a date"),
        ({"under": "../.."}, "--under ../..: not inside it"),
        ({"limit": "many"}, "limit: Input should be a valid integer"),
    ],
)
def test_bad_listing_requests_get_one_line(served: str, params: dict, message: str):
    response = httpx.get(served + "/api/files", params=params)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_the_library_facts_for_the_header_and_the_menus(served: str):
    facts = httpx.get(served + "/api/library").json()

    assert facts["images"] == MANY + 5 and facts["images_text"] == f"{MANY + 5} images"
    assert facts["dates_text"] == "taken 2019-01-01 to 2023-03-03"
    assert facts["cameras"] == [
        {"name": "Apple iPhone 12", "photos": 2}, {"name": "Canon EOS 5D", "photos": 1},
    ]  # fmt: skip
    assert facts["folders"] == [
        {"path": "2021", "photos": 2}, {"path": "2021/summer", "photos": 2},
        {"path": "2022", "photos": 1}, {"path": "2023", "photos": 1},
        {"path": "many", "photos": MANY},
    ]  # fmt: skip
    info = httpx.get(served + "/api/info").json()
    assert facts["updated_at"] == pytest.approx(info["updated_at"])
    page = httpx.get(served + "/").text
    assert f"{MANY + 5} images" in page and "taken 2019-01-01 to 2023-03-03" in page
    assert "<summary>details</summary>" in page
    for technical in ("layer</dt><dd>cells", "pooling</dt><dd>none", "weights</dt><dd>none"):
        assert technical in page


def test_the_servers_own_filter_starts_the_pages_controls(library: Path):
    service = RetrievalService.open(IndexSettings(library), embedder=colour_layout_embedder())
    server_filter = PhotoFilter("2021-07-01T00:00:00", "2022-01-01T00:00:00", "iphone", "2021")
    with service, live_server(create_app(service, photo_filter=server_filter)) as url:
        page = httpx.get(url + "/").text
        named_none = files(url)
        named_one = files(url, camera="canon")
    assert 'id="taken-from" name="taken_from" type="date" value="2021-07-01"' in page
    assert 'id="taken-to" name="taken_to" type="date" value="2021-12-31"' in page
    assert 'data-initial="iphone"' in page and 'data-initial="2021"' in page
    assert [file["path"] for file in named_none["files"]] == ["2021/summer/dinner.jpg"]
    assert [file["path"] for file in named_one["files"]] == ["2021/summer/beach.jpg"]


def test_a_large_jpeg_thumbnail_is_made_from_a_reduced_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import skimage.data

    photo = tmp_path / "phone.jpg"  # a real picture at a phone's 12 MP
    picture = Image.fromarray(skimage.data.chelsea()).resize((4032, 3024), Image.Resampling.BICUBIC)
    picture.save(photo, quality=90)
    decoded: list[tuple[int, int]] = []
    real_load = JpegImagePlugin.JpegImageFile.load

    def recording_load(image):
        decoded.append(image.size)
        return real_load(image)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", recording_load)
    made = thumbnail(photo, tmp_path / "thumbs" / "phone.jpg.jpg")
    monkeypatch.undo()

    # Decoded at 1/4 scale at most: the smallest DCT scale with no side under twice the
    # thumbnail's (later calls of `load` are on the image already decoded, or the thumbnail).
    assert decoded[0] == (1008, 756) and max(decoded) == (1008, 756)
    with Image.open(photo) as opened:  # a whole decode (no draft: the pixels are read first)
        whole = Image.fromarray(np.asarray(opened))
    whole.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    save_image_atomic(np.asarray(whole), tmp_path / "whole.jpg")
    with Image.open(made) as small, Image.open(tmp_path / "whole.jpg") as reference:
        assert small.size == reference.size == (THUMBNAIL_SIDE, 192)
        difference = np.abs(np.asarray(small, float) - np.asarray(reference, float))
    assert difference.mean() < 2  # the same picture (1.0 of 255 here)
