"""The assignment's script names run the same code as the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

from image_fixtures import REPO


def test_task_01_trains_and_evaluates_on_the_samples(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "task_01_image_classification.py"),
            "--data",
            str(REPO / "samples" / "digits"),
            "--epochs",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert "validation accuracy" in result.stderr and "test accuracy" in result.stderr
    assert json.loads((out / "metrics.json").read_text())["model"] == "lenet"
    assert (out / "evaluations.json").exists()


def test_task_01_refuses_a_missing_folder_in_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "task_01_image_classification.py"),
            "--data",
            str(tmp_path / "nothing"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "folder not found" in result.stderr
