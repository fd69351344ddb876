"""The retrieval service: files, bytes and indexed images as queries, warm across calls."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fake_embedders import colour_layout_embedder
from PIL import Image
from test_retrieval_catalogue import write_colour_folder

from foldervision.errors import FoldervisionError
from foldervision.images import ImageLoadError
from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings


@pytest.fixture
def service(tmp_path: Path):
    write_colour_folder(tmp_path / "db")
    settings = IndexSettings(tmp_path / "db")
    with RetrievalService.open(settings, embedder=colour_layout_embedder()) as opened:
        opened.update()
        yield opened


def test_a_file_bytes_and_the_indexed_image_give_the_same_answer(service: RetrievalService):
    query = service.database / "colour_4.png"

    [from_file], skipped = service.search_files([query], k=3)
    from_bytes = service.search_bytes(query.read_bytes(), "upload.png", k=3)
    from_index = service.search_indexed("colour_4.png", k=3)

    assert skipped == []
    assert from_file.matches[0].path == str(query) and from_file.matches[0].distance < 1e-6
    for other in (from_bytes, from_index):
        assert [m.path for m in other.matches] == [m.path for m in from_file.matches]
        np.testing.assert_allclose(
            [m.distance for m in other.matches], [m.distance for m in from_file.matches], atol=1e-6
        )
    assert from_bytes.query == "upload.png"
    assert service.search_indexed("not/there.png") is None


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


def test_an_empty_index_or_a_bad_k_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    empty_folder = IndexSettings(tmp_path / "empty")
    with RetrievalService.open(empty_folder, embedder=colour_layout_embedder()) as empty:
        empty.update()
        with pytest.raises(FoldervisionError, match="holds no images"):
            empty.search_indexed("x.png")
    write_colour_folder(tmp_path / "db")
    settings = IndexSettings(tmp_path / "db")
    with RetrievalService.open(settings, embedder=colour_layout_embedder()) as service:
        service.update()
        with pytest.raises(FoldervisionError, match="at least 1"):
            service.search_files([tmp_path / "db" / "colour_0.png"], k=0)
