"""The retrieval service: files, bytes, stored and query-folder images as queries, kept warm.

Answers name database files relative to the database folder; `in_folder` puts them under it.
"""

from __future__ import annotations

import io
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fake_embedders import colour_layout_embedder
from PIL import Image
from test_retrieval_catalogue import write_colour_folder

from foldervision.errors import EmptyIndexError, TopKError
from foldervision.images import ImageLoadError
from foldervision.retrieval.service import MAX_TOP_K, RetrievalService
from foldervision.retrieval.settings import IndexSettings


@pytest.fixture
def service(tmp_path: Path):
    write_colour_folder(tmp_path / "db")
    settings = IndexSettings(tmp_path / "db")
    with RetrievalService.open(settings, embedder=colour_layout_embedder()) as opened:
        opened.update()
        yield opened


def test_a_file_bytes_a_stored_and_a_query_folder_image_give_the_same_answer(
    service: RetrievalService, tmp_path: Path
):
    query = service.database / "colour_4.png"
    (tmp_path / "queries" / "sub").mkdir(parents=True)
    shutil.copy(query, tmp_path / "queries" / "sub" / "again.png")

    [from_file], skipped = service.search_files([query], k=3)
    from_bytes = service.search_bytes(query.read_bytes(), "upload.png", k=3)
    from_index = service.search_folder_file("colour_4.png", k=3)
    from_queries = service.search_folder_file("sub/again.png", 3, folder=tmp_path / "queries")

    assert skipped == []
    assert from_file.query == str(query)
    assert from_file.matches[0].path == "colour_4.png" and from_file.matches[0].distance < 1e-3
    for other in (from_bytes, from_index, from_queries):
        assert [m.path for m in other.matches] == [m.path for m in from_file.matches]
        np.testing.assert_allclose(
            [m.distance for m in other.matches], [m.distance for m in from_file.matches], atol=1e-3
        )
    assert (from_bytes.query, from_index.query) == ("upload.png", "colour_4.png")
    assert from_queries.query == "sub/again.png"


def test_in_folder_puts_matches_under_the_folder_as_the_user_named_it(service: RetrievalService):
    [result], _ = service.search_files([service.database / "colour_1.png"], k=2)

    placed = result.in_folder(Path("images") / "db")

    assert [m.path for m in placed.matches] == [f"images/db/{m.path}" for m in result.matches]
    assert [m.distance for m in placed.matches] == [m.distance for m in result.matches]
    assert placed.to_dict()["results"][0]["path"] == "images/db/colour_1.png"


def test_an_indexed_file_is_searched_by_its_stored_vector_without_decoding(
    service: RetrievalService,
):
    (service.database / "colour_2.png").write_bytes(b"no longer an image")  # not re-indexed
    calls = len(service.embedder.calls)

    stored = service.search_folder_file("colour_2.png", k=1)

    assert stored.matches[0].path == "colour_2.png" and stored.matches[0].distance < 1e-6
    assert len(service.embedder.calls) == calls  # no network run: the vector came from the store


def test_a_file_not_indexed_yet_is_decoded_and_a_bad_one_is_named(service: RetrievalService):
    shutil.copy(service.database / "colour_5.png", service.database / "late.png")
    (service.database / "broken.png").write_text("not an image")

    late = service.search_folder_file("late.png", k=1)

    assert late.query == "late.png" and late.matches[0].path == "colour_5.png"
    with pytest.raises(ImageLoadError, match="^broken.png: cannot decode"):
        service.search_folder_file("broken.png")
    with pytest.raises(ImageLoadError, match="^not/there.png: cannot read"):
        service.search_folder_file("not/there.png")


def test_sample_files_spreads_over_the_index_in_path_order(service: RetrievalService):
    assert service.sample_files(3) == ["colour_0.png", "colour_2.png", "colour_4.png"]
    assert service.sample_files(12) == [f"colour_{number}.png" for number in range(6)]


def test_duplicates_are_named_relative_to_the_database(service: RetrievalService):
    (service.database / "sub").mkdir()
    shutil.copy(service.database / "colour_3.png", service.database / "sub" / "copy.png")
    service.update()

    groups = service.find_duplicates(threshold=0.01)  # solid colours: only the copy is that close

    assert [group.files for group in groups] == [["colour_3.png", "sub/copy.png"]]
    assert groups[0].in_folder(service.database).files == [
        str(service.database / "colour_3.png"),
        str(service.database / "sub" / "copy.png"),
    ]


def test_bad_bytes_name_the_upload(service: RetrievalService) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="JPEG")
    with pytest.raises(ImageLoadError, match="^photo.jpg: cannot decode"):
        service.search_bytes(buffer.getvalue()[:100], "photo.jpg")
    with pytest.raises(ImageLoadError, match="^notes.txt"):
        service.search_bytes(b"just text", "notes.txt")


def test_the_network_is_built_once_and_searches_run_from_many_threads(service: RetrievalService):
    queries = sorted(service.database.glob("*.png"))
    expected = {query.name: service.search_files([query], k=2)[0][0].matches for query in queries}

    def search(query: Path) -> tuple[str, list]:
        return query.name, service.search_bytes(query.read_bytes(), query.name, k=2).matches

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(pool.map(search, queries * 5))

    assert answers == expected


def test_info_says_what_the_index_holds(service: RetrievalService) -> None:
    info = service.info()
    assert info.images == 6 and info.skipped == 0
    assert "colour-layout" in info.embedder and info.updated_at is not None
    assert info.index_path.endswith("index.sqlite")


def test_every_search_checks_k_against_one_range(service: RetrievalService) -> None:
    query = service.database / "colour_0.png"
    searches = [
        lambda k: service.search_files([query], k),
        lambda k: service.search_bytes(query.read_bytes(), "q.png", k),
        lambda k: service.search_folder_file("colour_0.png", k),
    ]
    for search in searches:
        for k in (0, -3, MAX_TOP_K + 1):
            with pytest.raises(TopKError, match=f"^k must be between 1 and {MAX_TOP_K}, got {k}"):
                search(k)
    [widest], _ = service.search_files([query], MAX_TOP_K)
    assert len(widest.matches) == 6  # every image, when k is more than the index holds


def test_an_empty_index_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    empty_folder = IndexSettings(tmp_path / "empty")
    with RetrievalService.open(empty_folder, embedder=colour_layout_embedder()) as empty:
        empty.update()
        with pytest.raises(EmptyIndexError, match="holds no images"):
            empty.search_folder_file("x.png")
        assert empty.sample_files(12) == []
        empty.warm_up()  # builds the network, searches nothing
