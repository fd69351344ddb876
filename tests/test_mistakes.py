"""The mistakes: most confident first, on a contact sheet from evaluate and in a run's report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from user_process import run_cli

from foldervision.inference import evaluate_folder
from foldervision.reports import find_mistakes

PNG = b"\x89PNG\r\n\x1a\n"


def test_mistakes_are_the_wrong_ones_most_confident_first():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95], [0.7, 0.3]])
    labels = np.array([0, 0, 0, 0, 1])
    paths = [Path(f"/d/{index}.png") for index in range(5)]
    mistakes = find_mistakes(paths, labels, probabilities, ["cat", "dog"], limit=3)
    assert [item["path"] for item in mistakes] == ["/d/3.png", "/d/1.png", "/d/4.png"]
    first = {"path": "/d/3.png", "true": "cat", "predicted": "dog", "confidence": 0.95}
    assert mistakes[0] == first
    assert find_mistakes(paths, labels, probabilities, ["cat", "dog"], limit=0) == []


def test_evaluate_draws_the_mislabelled_images_as_confident_mistakes(
    lenet_run, sample_digits, tmp_path
):
    """Ten real 2s filed under 1: the model calls them 2, and they lead the mistakes."""
    run, _ = lenet_run
    data = tmp_path / "test"
    shutil.copytree(sample_digits / "test", data)
    mislabelled = sorted((data / "2").glob("*.png"))[:10]
    for path in mislabelled:
        path.rename(data / "1" / f"mislabelled_{path.name}")
    result = evaluate_folder(run, data, mistakes=5)
    assert len(result["mistakes"]) == 5
    confidences = [item["confidence"] for item in result["mistakes"]]
    assert confidences == sorted(confidences, reverse=True)
    assert all(Path(item["path"]).name.startswith("mislabelled_") for item in result["mistakes"])
    assert all((item["true"], item["predicted"]) == ("1", "2") for item in result["mistakes"])
    sheet = Path(result["mistakes_sheet"])
    assert sheet.parent == run / "evaluations" and sheet.name.endswith("_mistakes.png")
    assert sheet.read_bytes()[:8] == PNG
    recorded = json.loads((run / "evaluations.json").read_text())[result["data"]]
    assert recorded["mistakes_sheet"] == str(sheet)
    assert recorded["balanced_accuracy"] == result["balanced_accuracy"]


def test_evaluate_cli_prints_the_mistakes_sheet_and_puts_it_in_json(
    lenet_run, sample_digits, tmp_path
):
    run, _ = lenet_run
    data = tmp_path / "test"
    shutil.copytree(sample_digits / "test", data)
    for path in sorted((data / "0").glob("*.png"))[:5]:
        path.rename(data / "2" / path.name)
    target = tmp_path / "sheets" / "wrong.png"
    plain = run_cli("evaluate", run, data, "--mistakes", "4", "--mistakes-sheet", target)
    assert plain.returncode == 0, plain.stderr
    assert "balanced accuracy" in plain.stdout.splitlines()[1]
    assert f"mistakes (4): {target}" in plain.stderr
    assert target.read_bytes()[:8] == PNG
    as_json = run_cli("evaluate", run, data, "--json", "--mistakes", "0")
    evaluation = json.loads(as_json.stdout)
    assert evaluation["mistakes"] == [] and evaluation["mistakes_sheet"] is None
    assert {"balanced_accuracy", "macro_f1"} <= set(evaluation)


def test_a_run_report_shows_its_validation_mistakes(lenet_run):
    run, metrics = lenet_run
    report = (run / "report.md").read_text()
    assert "## Mistakes (validation)" in report
    wrong = sum(metrics.confusion_matrix[i][j] for i in range(3) for j in range(3) if i != j)
    assert len(metrics.mistakes) == min(wrong, 24)
    if metrics.mistakes:
        assert "![mistakes](mistakes.png)" in report
        assert (run / "mistakes.png").read_bytes()[:8] == PNG
        first = metrics.mistakes[0]
        name = Path(first["path"]).name
        assert f"| `{name}` | {first['true']} | {first['predicted']} |" in report
    else:
        assert "None: every validation image was classified right." in report
