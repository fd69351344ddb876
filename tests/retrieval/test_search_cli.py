"""`foldervision search` options users rely on: a trained classifier as the model, --no-update."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from foldervision.cli import app

REPO_ROOT = Path(__file__).resolve().parents[2]
QUERY_FOLDER = REPO_ROOT / "query_images"
SIZE_OPTION = ["--image-size", "96"]


def search(*arguments: str | Path) -> tuple[int, list[dict], str]:
    """`foldervision search ... --json`: exit code, one object per query, stderr."""
    result = CliRunner().invoke(app, ["search", *map(str, arguments), "--json"])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, lines, result.stderr


def digit_of(path: str) -> str:
    """images_database names start with their digit: 2_train00109.png."""
    return Path(path).name.split("_")[0]


def test_a_trained_classifier_finds_the_query_s_digit(
    digits_folder: Path, lenet_run: tuple[Path, dict], sample_digits: Path
) -> None:
    """LeNet's features, trained on digits 0/1/2, put a new handwritten digit among its own."""
    run, _ = lenet_run
    queries = [sorted((sample_digits / "test" / digit).glob("*.png"))[0] for digit in "012"]

    exit_code, lines, stderr = search(*queries, "--database", digits_folder, "--model", run)

    assert exit_code == 0, stderr
    for query, line in zip(queries, lines, strict=True):
        found = [digit_of(result["path"]) for result in line["results"]]
        assert found == [query.parent.name] * 4, (query, line["results"])
    info = CliRunner().invoke(app, ["index", str(digits_folder), "--model", str(run)])
    assert info.exit_code == 0 and "(90 images)" in info.stderr
    assert "indexed" not in info.stderr, "the classifier's vectors were kept, not recomputed"


def test_image_size_is_refused_with_a_trained_classifier(
    digits_folder: Path, lenet_run: tuple[Path, dict]
) -> None:
    run, _ = lenet_run

    exit_code, lines, stderr = search(
        QUERY_FOLDER / "q1.png", "--database", digits_folder, "--model", run, *SIZE_OPTION
    )

    assert exit_code == 2 and lines == []
    assert stderr.splitlines() == [
        f"error: --image-size does not apply to {run}: a trained model always uses the size it "
        "was trained at. Leave --image-size out."
    ]
    assert not (digits_folder / ".foldervision").exists()


def test_no_update_searches_the_index_as_it_was(digits_folder: Path, cli_uses_session_embedder):
    query = QUERY_FOLDER / "q1.png"
    indexed = CliRunner().invoke(app, ["index", str(digits_folder), *SIZE_OPTION])
    assert indexed.exit_code == 0, indexed.stderr
    added = digits_folder / "added later.png"
    shutil.copy2(query, added)
    options = ["--database", digits_folder, "-k", "1", *SIZE_OPTION]

    exit_code, [as_indexed], stderr = search(query, *options, "--no-update")
    assert exit_code == 0, stderr
    assert as_indexed["results"][0]["path"] != str(added)
    assert as_indexed["results"][0]["distance"] > 0.1
    assert "indexed" not in stderr

    exit_code, [updated], stderr = search(query, *options)
    assert exit_code == 0, stderr
    assert updated["results"][0]["path"] == str(added)
    assert updated["results"][0]["distance"] < 1e-3
    assert "indexed 1 new or changed, removed 0, unchanged 90, skipped 0" in stderr
