"""Centring re-ranking (`--centre`): the order by hand, `serve --centre` answering as the service
does, the collection's mean kept in the index and taken again when its photos change, and plain
search for vectors with negative values. `search --centre` against `evaluate-retrieval
--centre`: in test_diffusion.py, beside `--diffuse`."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path

import httpx
import numpy as np
import pytest
from fake_embedders import colour_layout_embedder
from serve_fixtures import live_server

from foldervision.retrieval import index as index_module
from foldervision.retrieval import service as retrieval_service
from foldervision.retrieval.index import CENTRING_SETTING
from foldervision.retrieval.reranking import Centring, centred_order
from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings
from foldervision.web.app import create_app


def test_a_match_sharing_what_every_photo_has_falls_below_one_sharing_the_query_s_own() -> None:
    # Dimension 0 is large in every photo of the collection. `a` shares only it with the
    # query; `b` shares the query's own dimension 1. Plain cosine puts a first; once the square
    # roots are centred on the collection's mean, b comes first. A missing neighbour (inf)
    # is left out.
    query = np.array([9.0, 1.0, 0.0])
    vectors = np.array([[9.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    distances = np.array([0.1, 0.7, np.inf])
    mean = np.array([3.0, 0.5, 0.5])

    positions, centred = centred_order(query, distances, vectors, mean)

    assert positions.tolist() == [1, 0]
    # Centred: q = (0, .5, -.5), b = (-2, .5, -.5), a = (0, -.5, .5): cosines 1/3 and -1.
    np.testing.assert_allclose(centred, np.sqrt([2 - 2 / 3, 4.0]), atol=1e-9)


def test_a_shortlist_under_one_is_refused() -> None:
    with pytest.raises(ValueError, match="shortlist"):
        Centring(shortlist=0)


def stored_mean(index_path: Path) -> np.ndarray:
    """The centring mean as the index file keeps it, read with SQLite itself."""
    with sqlite3.connect(index_path) as connection:
        (value,) = connection.execute(
            "SELECT value FROM settings WHERE key = ?", (CENTRING_SETTING,)
        ).fetchone()
    return np.frombuffer(base64.b64decode(json.loads(value)["mean"]), np.float64)


def rooted_mean_of_stored_vectors(service: RetrievalService) -> np.ndarray:
    return np.sqrt(service.index.vectors().vectors.astype(np.float64)).mean(axis=0)


def test_the_mean_is_kept_in_the_index_and_taken_again_when_photos_change(
    digits_folder: Path, cli_uses_session_embedder
) -> None:
    settings = IndexSettings(database=digits_folder, image_size=96)
    query = sorted(digits_folder.glob("*.png"))[0]
    with RetrievalService.open(settings) as service:
        service.update()
        service.search_files([query], 4, reranking=Centring())
        first = rooted_mean_of_stored_vectors(service)
        index_path = service.index_path
    np.testing.assert_allclose(stored_mean(index_path), first, atol=1e-6)

    sorted(digits_folder.glob("*.png"))[-1].unlink()
    shutil.copy2(query, digits_folder / "added copy.png")
    with RetrievalService.open(settings) as service:
        service.update()
        [result], _ = service.search_files([query], 4, reranking=Centring())
        second = rooted_mean_of_stored_vectors(service)
    assert result.reranking is not None and result.reranking["method"] == "centred"
    assert not np.allclose(first, second, atol=1e-6)
    np.testing.assert_allclose(stored_mean(index_path), second, atol=1e-6)


def test_a_change_within_the_drift_keeps_the_mean_the_index_has(
    digits_folder: Path, cli_uses_session_embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "CENTRING_DRIFT", 0.5)
    settings = IndexSettings(database=digits_folder, image_size=96)
    query = sorted(digits_folder.glob("*.png"))[0]
    with RetrievalService.open(settings) as service:
        service.update()
        service.search_files([query], 4, reranking=Centring())
        first = stored_mean(service.index_path)
    shutil.copy2(query, digits_folder / "added copy.png")

    def not_again(self) -> np.ndarray:
        raise AssertionError("the mean was taken again")

    monkeypatch.setattr(index_module.ImageIndex, "take_centring_mean", not_again)
    with RetrievalService.open(settings) as service:  # a new process would open it so
        service.update()  # one file of many: the index's mean is used, not taken again
        [result], _ = service.search_files([query], 4, reranking=Centring())
        now = rooted_mean_of_stored_vectors(service)
        kept = stored_mean(service.index_path)

    assert result.reranking is not None and result.reranking["method"] == "centred"
    np.testing.assert_array_equal(kept, first)
    assert not np.allclose(kept, now, atol=1e-6)


def test_vectors_with_negative_values_are_searched_plain_and_say_so(
    photo_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval_service, "load_embedder", lambda *_: colour_layout_embedder())
    settings = IndexSettings(database=photo_folder)
    query = photo_folder / "astronaut.jpg"
    with RetrievalService.open(settings) as service:
        service.update()
        assert service.index.vectors().vectors.min() < 0
        [centred], _ = service.search_files([query], 3, reranking=Centring())
        [plain], _ = service.search_files([query], 3)

    assert centred.reranking is None
    assert centred.matches == plain.matches


def test_serve_centre_answers_as_the_service_does_and_says_what_the_distance_is(
    photo_folder: Path, embedder
) -> None:
    service = RetrievalService.open(IndexSettings(photo_folder, image_size=96), embedder=embedder)
    service.update()
    web_app = create_app(service, None, reranking=Centring())
    with service, live_server(web_app) as url:
        answer = httpx.get(url + "/api/search", params={"path": "chelsea.jpeg", "k": 5}).json()
        expected = service.search_folder_file("chelsea.jpeg", 5, reranking=Centring())
        plain = service.search_folder_file("chelsea.jpeg", 5)

    assert answer["reranking"] == Centring().describe()
    assert [match["path"] for match in answer["results"]] == [m.path for m in expected.matches]
    distances = [match["distance"] for match in answer["results"]]
    np.testing.assert_allclose(distances, [m.distance for m in expected.matches], atol=1e-6)
    assert distances != [m.distance for m in plain.matches]  # centred, not the plain ones
