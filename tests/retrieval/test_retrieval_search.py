"""`foldervision search` end to end: JSON schema, exact hits, batches, sheets, prompts, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.cli import retrieval as retrieval_cli
from foldervision.images import list_image_files, load_image
from foldervision.retrieval.embedder import Embedder

REPO_ROOT = Path(__file__).resolve().parents[2]
QUERY_FOLDER = REPO_ROOT / "query_images"
SIZE_OPTION = ["--image-size", "96"]


def run_cli(*arguments: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(argument) for argument in arguments])
    return result.exit_code, result.stdout, result.stderr


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_search_prints_one_json_object_with_ranked_distances(
    digits_folder: Path, cli_uses_session_embedder: Embedder
) -> None:
    exit_code, stdout, _ = run_cli(
        "search", QUERY_FOLDER / "q1.png", "--database", digits_folder, "--json", *SIZE_OPTION
    )

    assert exit_code == 0
    [line] = json_lines(stdout)
    assert set(line) == {"query", "results"}
    assert line["query"] == str(QUERY_FOLDER / "q1.png")
    assert [result["rank"] for result in line["results"]] == [1, 2, 3, 4]
    assert all(set(result) == {"rank", "path", "distance"} for result in line["results"])
    distances = [result["distance"] for result in line["results"]]
    assert distances == sorted(distances) and 0.0 < distances[0] < 2.0
    assert all(Path(result["path"]).parent == digits_folder for result in line["results"])


def test_query_that_is_in_the_database_comes_first_at_distance_zero(
    photo_folder: Path, cli_uses_session_embedder: Embedder
) -> None:
    query = photo_folder / "猫 cat.tif"
    exit_code, stdout, stderr = run_cli(
        "search", query, "--database", photo_folder, "-k", "3", "--json", *SIZE_OPTION
    )

    assert exit_code == 0, stderr
    [line] = json_lines(stdout)
    assert line["results"][0]["path"] == str(query)
    assert line["results"][0]["distance"] == pytest.approx(0.0, abs=1e-3)
    # chelsea.jpeg is the same picture as a JPEG: near, but not the query itself
    assert len(line["results"]) == 3 and line["results"][1]["distance"] > 0.01
    assert "broken.jpg" in stderr  # bad database files are listed, and did not stop the run


def test_batch_search_answers_every_query_and_draws_one_sheet(
    digits_folder: Path, tmp_path: Path, cli_uses_session_embedder: Embedder
) -> None:
    sheet = tmp_path / "sheet.png"
    exit_code, stdout, stderr = run_cli(
        "search", "--queries", QUERY_FOLDER, "--database", digits_folder,
        "-k", "2", "--json", "--sheet", sheet, *SIZE_OPTION,
    )  # fmt: skip

    assert exit_code == 0, stderr
    lines = json_lines(stdout)
    expected_queries = [str(path) for path in list_image_files(QUERY_FOLDER)]
    assert [line["query"] for line in lines] == expected_queries
    assert all(len(line["results"]) == 2 for line in lines)
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = load_image(sheet).shape
    assert 400 < height < 2500 and 400 < width < 1500  # six rows of three tiles


def test_plain_output_is_rank_distance_path_lines(
    digits_folder: Path, cli_uses_session_embedder: Embedder
) -> None:
    exit_code, stdout, stderr = run_cli(
        "search", QUERY_FOLDER / "q3.png", "--database", digits_folder, *SIZE_OPTION
    )

    assert exit_code == 0, stderr
    rows = [line.split("\t") for line in stdout.splitlines()]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    assert all(Path(row[2]).is_file() and float(row[1]) >= 0 for row in rows)
    assert "query: " in stderr


def test_without_a_query_and_without_a_terminal_asks_for_one(
    digits_folder: Path, cli_uses_session_embedder: Embedder
) -> None:
    exit_code, stdout, stderr = run_cli("search", "--database", digits_folder, *SIZE_OPTION)

    assert exit_code == 2
    assert stdout == ""
    assert stderr.startswith("error: no query image given") and stderr.count("\n") == 1


def test_terminal_user_picks_a_query_from_the_numbered_list(
    digits_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli_uses_session_embedder: Embedder,
) -> None:
    shutil.copytree(QUERY_FOLDER, tmp_path / "query_images")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(retrieval_cli, "stdin_is_terminal", lambda: True)

    result = CliRunner().invoke(
        app, ["search", "--database", str(digits_folder), "--json", *SIZE_OPTION], input="9\n2\n"
    )

    assert result.exit_code == 0, result.stderr
    assert "  2  q2.jpg" in result.stderr and "from 1 to 6" in result.stderr
    # Click's test runner echoes the typed answers to stdout; a terminal would show them itself.
    [line] = json_lines("\n".join(row for row in result.stdout.splitlines() if row[:1] == "{"))
    assert line["query"] == str(Path("query_images") / "q2.jpg")
    assert (tmp_path / retrieval_cli.DEFAULT_INTERACTIVE_SHEET).is_file()


def test_searching_with_another_model_setting_is_refused(
    digits_folder: Path, cli_uses_session_embedder: Embedder
) -> None:
    exit_code, _, _ = run_cli("index", digits_folder, *SIZE_OPTION)
    assert exit_code == 0

    exit_code, stdout, stderr = run_cli(
        "search", QUERY_FOLDER / "q1.png", "--database", digits_folder, "--image-size", "128"
    )

    assert exit_code == 2 and stdout == ""
    assert "--rebuild" in stderr and "index.sqlite" in stderr and stderr.count("\n") == 1
