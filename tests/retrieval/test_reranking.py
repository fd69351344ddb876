"""Query expansion (alpha-QE): the expanded vector by hand, the filter on both searches, and
the same expansion in `search --expand` and `evaluate-retrieval --expand`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_embedders import green_angle_embedder
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.images import save_image_atomic
from foldervision.retrieval import service as retrieval_service
from foldervision.retrieval.evaluate import leave_one_out_expansion
from foldervision.retrieval.filters import PhotoFilter
from foldervision.retrieval.reranking import EXPANDED_DISTANCE, QueryExpansion, expand_queries
from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings

GREENS = {"kept/a": 0, "kept/b": 150, "kept/c": 255, "other/x": 60}
"""Solid colours (255, green, 0): the green-angle embedder's vectors point at atan(g/255)."""
QUERY_GREEN = 45


def unit(*vector: float) -> np.ndarray:
    array = np.asarray(vector, np.float64)
    return array / np.linalg.norm(array)


def test_the_expanded_query_by_hand() -> None:
    query = np.array([[1.0, 0.0]])
    at_60_degrees = unit(0.5, np.sqrt(3) / 2)
    neighbours = np.array([[[1.0, 0.0], at_60_degrees, [0.0, 1.0]]])
    # Itself (distance 0: skipped), then 60 degrees away (similarity 0.5), then missing.
    distances = np.array([[0.0, 1.0, np.inf]])

    expanded = expand_queries(query, neighbours, distances, QueryExpansion(2, alpha=3.0))

    np.testing.assert_allclose(expanded[0], unit(*(query[0] + 0.5**3 * at_60_degrees)), atol=1e-6)
    off = expand_queries(query, neighbours, distances, QueryExpansion(0))
    np.testing.assert_array_equal(off, query)


def test_a_negative_neighbour_count_is_refused() -> None:
    with pytest.raises(ValueError, match="--expand"):
        QueryExpansion(-1)


@pytest.fixture
def angle_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A database of solid colours in two subfolders, a query beside it; vectors by angle."""
    for name, green in {**GREENS, "../query": QUERY_GREEN}.items():
        pixels = np.zeros((8, 8, 3), np.uint8)
        pixels[..., 0], pixels[..., 1] = 255, green
        save_image_atomic(pixels, tmp_path / "database" / f"{name}.png")
    monkeypatch.setattr(retrieval_service, "load_embedder", lambda *_: green_angle_embedder())
    return tmp_path


def colour_vector(green: int) -> np.ndarray:
    return unit(255.0, green)


def test_a_filtered_search_expands_with_the_kept_photos_only(angle_folder: Path) -> None:
    # Unfiltered, the query's nearest photo is other/x; among kept/ it is kept/a.
    query, kept_a = colour_vector(QUERY_GREEN), colour_vector(GREENS["kept/a"])
    expanded = unit(*(query + float(query @ kept_a) ** 3 * kept_a))
    settings = IndexSettings(angle_folder / "database")
    with RetrievalService.open(settings) as service:
        service.update()
        results, _ = service.search_files(
            [angle_folder / "query.png"], 3, PhotoFilter(under="kept"), QueryExpansion(1)
        )

    matches = results[0].matches
    assert [match.path for match in matches] == ["kept/a.png", "kept/b.png", "kept/c.png"]
    for match in matches:
        stored = colour_vector(GREENS[match.path.removesuffix(".png")])
        assert match.distance == pytest.approx(np.linalg.norm(expanded - stored), abs=1e-3)
    assert results[0].reranking is not None
    assert results[0].reranking["distance"] == EXPANDED_DISTANCE


def test_searching_an_indexed_photo_expands_as_the_evaluation_does(angle_folder: Path) -> None:
    # The photo's own stored vector (distance 0) is skipped, as leave-one-out leaves it out.
    names = sorted(GREENS)
    vectors = np.stack([colour_vector(GREENS[name]) for name in names]).astype(np.float32)
    expansion = QueryExpansion(2)
    expected = leave_one_out_expansion(vectors, expansion)
    with RetrievalService.open(IndexSettings(angle_folder / "database")) as service:
        service.update()
        for row, name in enumerate(names):
            answer = service.search_folder_file(f"{name}.png", len(names), reranking=expansion)
            found = {match.path: match.distance for match in answer.matches}
            for other, vector in zip(names, vectors):
                distance = float(np.linalg.norm(expected[row] - vector))
                assert found[f"{other}.png"] == pytest.approx(distance, abs=1e-3)


def test_the_cli_says_what_the_distance_is_after_reranking(angle_folder: Path) -> None:
    database, query = angle_folder / "database", angle_folder / "query.png"
    runner = CliRunner()
    base = ["search", str(query), "--database", str(database), "--json", "-k", "2"]

    plain = json.loads(runner.invoke(app, base).stdout)
    expanded = runner.invoke(app, [*base, "--expand", "2"])
    refused = runner.invoke(app, [*base, "--expand", "-1"])

    assert "reranking" not in plain
    assert expanded.exit_code == 0, expanded.stderr
    reranking = json.loads(expanded.stdout)["reranking"]
    assert reranking["method"] == "alpha-QE" and reranking["neighbours"] == 2
    assert reranking["distance"] == EXPANDED_DISTANCE
    assert refused.exit_code != 0 and "--expand" in refused.stderr


def test_evaluate_retrieval_reports_the_expansion(angle_folder: Path) -> None:
    database = angle_folder / "database"
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[..., 0], pixels[..., 1] = 255, 200
    save_image_atomic(pixels, database / "other" / "y.png")  # a class needs two images
    runner = CliRunner()

    plain = json.loads(runner.invoke(app, ["evaluate-retrieval", str(database), "--json"]).stdout)
    result = runner.invoke(app, ["evaluate-retrieval", str(database), "--json", "--expand", "1"])

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert plain["reranking"] is None
    assert report["reranking"]["neighbours"] == 1
    assert report["queries"] == plain["queries"] == 5
