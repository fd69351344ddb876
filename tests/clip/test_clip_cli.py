"""Search by words and zero-shot labels end to end on the tiny OpenCLIP model, as a user runs
them: `index --model clip:FOLDER`, `search --text`, `predict --labels`, `evaluate --zero-shot`.
Expected answers are computed here from the model's vectors (checked against OpenCLIP in
test_clip_reference.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clip_fixtures import TINY_MODEL
from image_fixtures import SAMPLE_DIGITS
from user_process import run_cli, user_environment

from foldervision.errors import FoldervisionError
from foldervision.images import list_image_files
from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings

MODEL = f"clip:{TINY_MODEL}"


@pytest.fixture()
def database(tmp_path) -> Path:
    """Twelve real digits, four of each class 0, 1, 2."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for digit in (0, 1, 2):
        for source in sorted((SAMPLE_DIGITS / "test" / str(digit)).glob("*.png"))[:4]:
            shutil.copyfile(source, folder / f"{digit}_{source.name}")
    return folder


def expected_ranking(embedder, folder: Path, text: str) -> list[tuple[str, float]]:
    files = list_image_files(folder)
    vectors = np.concatenate([batch.vectors for batch in embedder.embed_files(files)])
    distances = np.linalg.norm(vectors - embedder.embed_texts([text])[0], axis=1)
    return [(files[index].name, float(distances[index])) for index in np.argsort(distances)]


def json_lines(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_search_by_words_ranks_by_the_text_vector(database, tiny_embedder):
    indexed = run_cli("index", database, "--model", MODEL)
    assert indexed.returncode == 0, indexed.stderr
    assert (database / ".foldervision" / "index.tiny-clip.sqlite").is_file()
    assert "(12 images)" in indexed.stderr
    [answer] = json_lines(
        run_cli(
            "search",
            "--text",
            "a red flower on grass",
            "--database",
            database,
            "-k",
            "8",
            "--model",
            MODEL,
            "--json",
        )
    )
    assert answer["query"] == "a red flower on grass"
    found = [(Path(match["path"]).name, match["distance"]) for match in answer["results"]]
    expected = expected_ranking(tiny_embedder, database, "a red flower on grass")[:8]
    assert [name for name, _ in found] == [name for name, _ in expected]
    assert np.allclose([d for _, d in found], [d for _, d in expected], atol=1e-3)


def test_centring_leaves_clip_vectors_plain_and_says_so(database):
    search = ["search", "--text", "receipt", "--database", database, "-k", "5", "--model", MODEL]
    centred = run_cli(*search, "--json", "--centre")
    [plain] = json_lines(run_cli(*search, "--json"))

    [answer] = json_lines(centred)
    assert "reranking" not in answer and answer["results"] == plain["results"]
    assert "--centre: this index's vectors have negative values" in centred.stderr


def test_text_search_draws_a_sheet_and_image_queries_use_clip_vectors_too(database, tmp_path):
    sheet = tmp_path / "sheet.png"
    result = run_cli(
        "search",
        "--text",
        "receipt",
        "--database",
        database,
        "-k",
        "3",
        "--model",
        MODEL,
        "--sheet",
        sheet,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3 and sheet.stat().st_size > 1000
    query = sorted(database.glob("1_*.png"))[0]
    [answer] = json_lines(
        run_cli("search", query, "--database", database, "-k", "1", "--model", MODEL, "--json")
    )
    assert Path(answer["results"][0]["path"]).name == query.name
    assert answer["results"][0]["distance"] < 1e-3


def test_clip_vectors_sit_beside_the_default_ones(database):
    assert run_cli("index", database).returncode == 0
    assert run_cli("index", database, "--model", MODEL).returncode == 0
    names = {path.name for path in (database / ".foldervision").iterdir()}
    assert {"index.sqlite", "index.tiny-clip.sqlite"} <= names
    by_example = run_cli(
        "search",
        sorted(database.glob("*.png"))[0],
        "--database",
        database,
        "-k",
        "2",
        "--no-update",
    )
    assert by_example.returncode == 0, by_example.stderr
    assert len(by_example.stdout.splitlines()) == 2
    with RetrievalService.open(IndexSettings(database)) as default:
        assert len(default.index) == 12
        with pytest.raises(FoldervisionError, match="mobilenetv2, which has no text side"):
            default.search_texts(["a dog"], 2)
    unpulled = run_cli("search", "--text", "a dog", "--database", database, "--no-update")
    assert unpulled.returncode == 2
    assert "clip-vit-b32 is not downloaded yet; run `foldervision models pull" in unpulled.stderr


def test_predict_labels_gives_clips_probabilities(database, tiny_embedder):
    files = sorted(database.glob("*.png"))[:3]
    predictions = json_lines(
        run_cli("predict", "--labels", "zero, one,two", *files, "--model", MODEL, "--json")
    )
    prompts = tiny_embedder.embed_texts(
        ["a photo of a zero.", "a photo of a one.", "a photo of a two."]
    )
    images = np.concatenate([batch.vectors for batch in tiny_embedder.embed_files(files)])
    logits = tiny_embedder.model.config.logit_scale * images @ prompts.T
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert [prediction["path"] for prediction in predictions] == [str(path) for path in files]
    for prediction, row in zip(predictions, expected):
        assert list(prediction["probabilities"]) == ["zero", "one", "two"]
        assert np.allclose(list(prediction["probabilities"].values()), row, atol=1e-4)
        assert prediction["label"] == ["zero", "one", "two"][int(row.argmax())]


def test_evaluate_zero_shot_reports_as_a_trained_run_does(tmp_path):
    folder = tmp_path / "digits"
    for digit in (0, 1, 2):
        shutil.copytree(SAMPLE_DIGITS / "test" / str(digit), folder / f"digit {digit}")
    result = json_lines(run_cli("evaluate", "--zero-shot", folder, "--model", MODEL, "--json"))[0]
    assert result["size"] == 150 and result["model"] == "clip:tiny-clip"
    assert list(result["per_class"]) == ["digit 0", "digit 1", "digit 2"]
    matrix = np.array(result["confusion_matrix"])
    assert matrix.sum() == 150 and list(matrix.sum(axis=1)) == [50, 50, 50]
    assert result["accuracy"] == pytest.approx(np.trace(matrix) / 150)
    text = run_cli("evaluate", "--zero-shot", folder, "--model", MODEL)
    assert text.stdout.startswith(f"accuracy {100 * result['accuracy']:.2f}% on 150 images")


def test_no_tensorflow_and_no_torch_on_the_clip_paths(database):
    script = (
        "import sys\n"
        "from foldervision.cli import main\n"
        "for arguments in "
        + repr(
            [
                ["index", str(database), "--model", MODEL],
                ["search", "--text", "a cat", "--database", str(database), "--model", MODEL],
                ["predict", "--labels", "a,b", str(database), "--model", MODEL],
            ]
        )
        + ":\n"
        "    try:\n"
        "        main(arguments)\n"
        "    except SystemExit as exit:\n"
        "        assert not exit.code, exit.code\n"
        "print(sorted(name for name in ('tensorflow', 'keras', 'torch') if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=user_environment(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_pull_offline_is_one_line(tmp_path):
    env = {
        **user_environment(),
        "FOLDERVISION_CACHE": str(tmp_path),
        "FOLDERVISION_MODELS_URL": "http://127.0.0.1:9/{repository}/{path}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "foldervision", "models", "pull", "clip-vit-b32"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot reach 127.0.0.1:9")
    assert len(result.stderr.strip().splitlines()) == 1
