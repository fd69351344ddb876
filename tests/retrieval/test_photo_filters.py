"""Filters inside the search: the true top k among the matching photos, in every store.

A library of 200 real photo files (crops of real pictures, with the EXIF a camera writes) where
each filter keeps 1% of it: the filtered answer must equal brute force over the kept files.
The network-free colour-layout embedder keeps it quick; the stores, catalogue and SQL are real.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from fake_embedders import colour_layout_embedder
from photo_library import camera_exif, write_photo

from foldervision.errors import FoldervisionError
from foldervision.retrieval.filters import PhotoFilter, photo_filter
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.stores import StoreLocation
from foldervision.retrieval.stores import faiss as faiss_store

LIBRARY_SIZE = 200
TRIP = (5, 150)
"""The photos in trip/ (the others are in roll/)."""
OLD = (7, 120)
"""Taken in July 2021 (the others in 2023)."""
CANON = (7, 42)
"""Taken with a Canon (the others with an iPhone, or no camera at all)."""
NO_CAMERA = (3, 13, 23)


def library_path(number: int) -> str:
    return f"{'trip' if number in TRIP else 'roll'}/IMG_{number:04d}.jpg"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 photos cropped from five real pictures at random places, each with its own EXIF."""
    folder = tmp_path_factory.mktemp("library")
    pictures = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(),
                skimage.data.rocket(), skimage.data.immunohistochemistry()]  # fmt: skip
    random = np.random.default_rng(7)
    for number in range(LIBRARY_SIZE):
        picture = pictures[number % len(pictures)]
        top = random.integers(0, picture.shape[0] - 64)
        left = random.integers(0, picture.shape[1] - 64)
        day = 1 + number % 28
        taken = f"2021:07:{day:02d} 10:00:00" if number in OLD else f"2023:05:{day:02d} 09:30:00"
        make, model = ("Canon", "Canon EOS 5D") if number in CANON else ("Apple", "iPhone 12")
        if number in NO_CAMERA:
            make = model = None
        exif = camera_exif(taken=taken, make=make, model=model)
        write_photo(folder / library_path(number), picture[top : top + 64, left : left + 64], exif)
    return folder


@pytest.fixture(params=["faiss-exact", "faiss-approximate", "faiss-lists", "milvus"])
def library_index(request, library: Path, tmp_path: Path, monkeypatch) -> ImageIndex:
    """The library's index in each store; "faiss-lists" searches the IVF lists with the id
    selector even for a handful of ids (instead of their exact distances)."""
    if request.param == "milvus":
        location = StoreLocation("milvus", str(tmp_path / "vectors.db"))
    else:
        location = StoreLocation(ann="exact" if request.param == "faiss-exact" else "approximate")
    if request.param == "faiss-lists":
        monkeypatch.setattr(faiss_store, "EXACT_SUBSET_MAX", 0)
    embedder = colour_layout_embedder()
    settings = IndexSettings(library, index_path=tmp_path / "index.sqlite", store_location=location)
    index = ImageIndex.open(settings, embedder.spec)
    index.update(embedder)
    yield index
    index.close()


def brute_force(index: ImageIndex, query: np.ndarray, kept: list[str], k: int) -> list[str]:
    """The k nearest of the kept files, computed from their stored vectors one by one."""
    ids = index.catalogue.ids_of(kept)
    distances = np.linalg.norm(index.store.vectors(ids) - query, axis=1)
    return [kept[row] for row in np.argsort(distances, kind="stable")[:k]]


FILTERS = {
    "1% by date": (dict(taken_after="2021", taken_before="2022"), OLD),
    "1% by camera": (dict(camera="canon eos"), CANON),
    "1% by folder": (dict(under="trip"), TRIP),
    "date and camera": (dict(taken_before="2022-01-01", camera="CANON"), (7,)),
    "half by date": (dict(taken_after="2023-05-15"), None),
}


@pytest.mark.parametrize("name", FILTERS)
def test_a_filtered_search_is_the_true_top_k_among_the_kept_photos(
    library_index: ImageIndex, library: Path, name: str
) -> None:
    options, expected_numbers = FILTERS[name]
    kept_filter = photo_filter(library, **options)
    kept_ids = library_index.matching_ids(kept_filter)
    kept = sorted(library_index.catalogue.paths_of(kept_ids).values())
    if expected_numbers is not None:
        assert kept == sorted(library_path(number) for number in expected_numbers)
    else:  # days 15-28 of May 2023: exactly the photos numbered so
        assert len(kept) == sum(1 + n % 28 >= 15 for n in range(LIBRARY_SIZE) if n not in OLD)

    queries = library_index.store.vectors(library_index.catalogue.ids_of(
        [library_path(number) for number in (0, 7, 61, 150, 199)]
    ))  # fmt: skip
    answers = library_index.search(queries, 4, kept_filter)

    for query, answer in zip(queries, answers, strict=True):
        found = [path for path, _ in answer]
        assert found == brute_force(library_index, query, kept, 4)
        expected = np.linalg.norm(library_index.store.vectors(
            library_index.catalogue.ids_of(found)) - query, axis=1)  # fmt: skip
        assert [distance for _, distance in answer] == pytest.approx(expected, abs=1e-4)


def test_a_filter_that_keeps_nothing_answers_nothing(library_index: ImageIndex, library) -> None:
    query = library_index.store.vectors(library_index.catalogue.ids_of([library_path(0)]))

    assert library_index.search(query, 4, photo_filter(library, camera="hasselblad")) == [[]]


def test_filtered_duplicates_pair_only_kept_photos(library: Path, tmp_path: Path) -> None:
    """Copies of a trip photo in roll/ are duplicates, but not under --under trip alone."""
    folder = tmp_path / "library"
    shutil.copytree(library, folder)
    for number, copy in ((5, "roll/copy of 5.jpg"), (150, "trip/copy of 150.jpg")):
        shutil.copy2(folder / library_path(number), folder / copy)
    settings = IndexSettings(folder)
    with RetrievalService.open(settings, embedder=colour_layout_embedder()) as service:
        service.update()
        everywhere = service.find_duplicates(0.05)
        in_trip = service.find_duplicates(0.05, photo_filter(folder, under="trip"))

    assert ["roll/copy of 5.jpg", "trip/IMG_0005.jpg"] in [group.files for group in everywhere]
    assert [group.files for group in in_trip] == [["trip/IMG_0150.jpg", "trip/copy of 150.jpg"]]


def test_listing_is_newest_first_and_pages(library: Path, tmp_path: Path) -> None:
    settings = IndexSettings(library, index_path=tmp_path / "index.sqlite")
    with RetrievalService.open(settings, embedder=colour_layout_embedder()) as service:
        service.update()
        first_page = service.list_files(sort="taken", offset=0, limit=5)
        everything = service.list_files(sort="taken", limit=1000)
        by_path = service.list_files(sort="path", limit=3)
        canon = service.list_files(photo_filter(library, camera="canon"))
        count = service.count_files(photo_filter(library, camera="canon"))

    taken = [entry.metadata.taken for entry in everything]
    assert taken == sorted(taken, reverse=True) and len(everything) == LIBRARY_SIZE
    assert first_page == everything[:5]
    assert [entry.path for entry in by_path] == sorted(e.path for e in everything)[:3]
    assert [entry.path for entry in canon] == [library_path(42), library_path(7)]  # 2023, 2021
    assert count == 2
    assert canon[0].to_dict()["camera"] == "Canon EOS 5D"


def test_an_index_from_before_metadata_gets_it_without_embedding_again(
    library: Path, tmp_path: Path
) -> None:
    index_path = tmp_path / "index.sqlite"
    settings = IndexSettings(library, index_path=index_path)
    embedder = colour_layout_embedder()
    with RetrievalService.open(settings, embedder=embedder) as service:
        service.update()
        expected = service.list_files(sort="path", limit=1000)
    with sqlite3.connect(index_path) as connection:  # as an index of schema 2 was
        connection.execute("DROP TABLE photos")
        connection.execute("UPDATE settings SET value = '2' WHERE key = 'schema'")
    embedder.calls.clear()

    with RetrievalService.open(settings, embedder=embedder) as service:
        assert service.count_files(photo_filter(library, camera="canon")) == 0  # nothing read yet
        update = service.update()
        listed = service.list_files(sort="path", limit=1000)

    assert update.embedded == [] and embedder.calls == []
    assert listed == expected


# --------------------------------------------------------------------------------------------
# Building a filter: every value checked, one line saying what to pass.


def test_dates_name_the_start_of_a_year_month_day_or_minute(tmp_path: Path) -> None:
    made = [photo_filter(tmp_path, taken_after=text).taken_after
            for text in ("2023", "2023-06", "2023-06-01", "2023-06-01T18:30")]  # fmt: skip

    assert made == ["2023-01-01T00:00:00", "2023-06-01T00:00:00", "2023-06-01T00:00:00",
                    "2023-06-01T18:30:00"]  # fmt: skip
    assert photo_filter(tmp_path) == PhotoFilter() and PhotoFilter().is_empty


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(taken_after="last summer"), "--taken-after last summer: not a date; pass one like"),
        (dict(taken_before="2023-13"), "--taken-before 2023-13: not a date"),
        (dict(taken_after="2023-06", taken_before="2023-06"), "nothing can match"),
        (dict(under="elsewhere"), "--under elsewhere: no such folder in it"),
        (dict(under="/"), "--under /: not inside it"),
        (dict(under=".."), "--under ..: not inside it"),
    ],
)
def test_a_bad_filter_value_is_one_line(tmp_path: Path, options: dict, message: str) -> None:
    database = tmp_path / "photos"
    database.mkdir()
    with pytest.raises(FoldervisionError, match=message.replace("(", r"\(")) as raised:
        photo_filter(database, **options)
    assert "\n" not in str(raised.value)


def test_under_takes_a_folder_of_the_database_or_its_path(tmp_path: Path, monkeypatch) -> None:
    database = tmp_path / "photos"
    (database / "2023" / "summer").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)

    assert photo_filter(database, under="2023/summer").under == "2023/summer"
    assert photo_filter("photos", under="photos/2023").under == "2023"
    assert photo_filter(database, under=database / "2023" / "summer").under == "2023/summer"
    assert photo_filter(database, under=database).under is None  # the whole database
