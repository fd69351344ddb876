"""Diffusion re-ranking: the order by hand on a chain, and `search --diffuse` (and
`--centre`) on a real folder agreeing with `evaluate-retrieval` given the same option (the
query itself left out of both)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.retrieval.reranking import (
    CENTRED_DISTANCE,
    DIFFUSED_DISTANCE,
    Diffusion,
    diffused_order,
)

SIZE_OPTION = ["--image-size", "96"]


def at_degrees(*angles: float) -> np.ndarray:
    radians = np.radians(angles)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_a_photo_linked_to_the_nearest_match_rises_above_an_isolated_nearer_one() -> None:
    # The query lies at 0 degrees. a (10) and b (20) are each other's nearest; c (-15) is
    # nearer to the query than b, but its nearest, a, has b nearer: no mutual edge. From the
    # one seed a, the score reaches b and not c. A copy of the query (0) stays first, and a
    # missing neighbour (inf) is left out.
    names = ["copy", "a", "c", "b", "missing"]
    vectors = np.concatenate([at_degrees(0, 10, -15, 20), np.zeros((1, 2))])
    distances = np.linalg.norm(vectors - at_degrees(0), axis=1)
    distances[-1] = np.inf
    diffusion = Diffusion(shortlist=10, neighbours=1, seeds=1)

    order = diffused_order(distances, vectors, diffusion)

    assert [names[position] for position in order] == ["copy", "a", "b", "c"]
    assert [names[p] for p in np.argsort(distances)[:4]] == ["copy", "a", "c", "b"]


def test_beyond_the_shortlist_the_order_is_the_distance() -> None:
    vectors = at_degrees(5, 10, 20, 30, 40)
    distances = np.linalg.norm(vectors - at_degrees(0), axis=1)

    order = diffused_order(distances, vectors, Diffusion(shortlist=2, neighbours=1, seeds=1))

    assert sorted(order[:2]) == [0, 1] and list(order[2:]) == [2, 3, 4]


def test_bad_settings_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="alpha"):
        Diffusion(alpha=1.0)
    with pytest.raises(ValueError, match="shortlist"):
        Diffusion(shortlist=1)


def labelled_digits(digits_folder: Path) -> Path:
    """The sample digits moved into one subfolder per digit (their names start with it)."""
    labelled = digits_folder.parent / "labelled"
    for photo in sorted(digits_folder.iterdir()):
        if photo.is_file():
            (labelled / photo.name[0]).mkdir(parents=True, exist_ok=True)
            shutil.copy2(photo, labelled / photo.name[0] / photo.name)
    return labelled


@pytest.mark.parametrize(
    ("option", "method", "distance"),
    [("--diffuse", "diffusion", DIFFUSED_DISTANCE), ("--centre", "centred", CENTRED_DISTANCE)],
)
def test_search_reranked_leaves_one_out_as_evaluate_retrieval_does(
    digits_folder: Path, cli_uses_session_embedder, option: str, method: str, distance: str
) -> None:
    folder = labelled_digits(digits_folder)
    runner = CliRunner()
    evaluated = runner.invoke(
        app, ["evaluate-retrieval", str(folder), option, "--json", *SIZE_OPTION]
    )
    plain = runner.invoke(app, ["evaluate-retrieval", str(folder), "--json", *SIZE_OPTION])
    searched = runner.invoke(
        app,
        ["search", "--queries", str(folder), "--database", str(folder), "-k", "5",
         option, "--json", *SIZE_OPTION],
    )  # fmt: skip

    assert evaluated.exit_code == 0 and searched.exit_code == 0, evaluated.stderr + searched.stderr
    report = json.loads(evaluated.stdout)
    assert report["queries"] == 90
    assert report["reranking"]["method"] == method
    precisions = []
    for line in searched.stdout.splitlines():
        answer = json.loads(line)
        assert answer["reranking"]["distance"] == distance
        if method == "centred":  # the centred distance orders the list; diffusion's need not
            distances = [match["distance"] for match in answer["results"]]
            assert distances == sorted(distances)
        query = Path(answer["query"])
        found = [Path(match["path"]) for match in answer["results"]]
        others = [path for path in found if path != query][:4]
        precisions.append(np.mean([other.parent.name == query.parent.name for other in others]))
    assert len(precisions) == 90
    assert np.mean(precisions) == pytest.approx(report["precision_at_4"], abs=1e-9)
    # It re-orders: the mAP moves (either way) from the plain ranking's.
    assert report["mean_average_precision"] != json.loads(plain.stdout)["mean_average_precision"]


def test_expand_and_diffuse_together_are_refused(digits_folder: Path) -> None:
    result = CliRunner().invoke(
        app, ["search", "--database", str(digits_folder), "--expand", "2", "--diffuse", "x.png"]
    )
    assert result.exit_code != 0
    assert "choose one re-ranking" in result.stderr
